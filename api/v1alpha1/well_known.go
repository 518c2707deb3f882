package v1alpha1

// Labels, annotations, Secret keys and names shared by the operator, workers and tools.
const (
	// LabelManagedBy marks every object the operator creates, so the manager's cache
	// can be limited to them. Its value is ManagedByValue.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on the operator's objects.
	ManagedByValue = "jobtoken"
	// LabelRole tells the kind of object: RoleWorkerToken, RoleVault, RoleWorker.
	LabelRole = "jobtoken.dev/role"
	// RoleWorkerToken marks the Secret in the job namespace that workers mount.
	RoleWorkerToken = "worker-token"
	// RoleVault marks the Secret in the operator's namespace that holds the refresh token.
	RoleVault = "vault"
	// RoleWorker marks the batch Job and its pods.
	RoleWorker = "worker"
	// LabelImportJobName, LabelImportJobNamespace and LabelImportJobUID tie an object to
	// its ImportJob (the vault Secret lives in another namespace, so owner references
	// cannot be used there).
	LabelImportJobName      = "jobtoken.dev/importjob-name"
	LabelImportJobNamespace = "jobtoken.dev/importjob-namespace"
	LabelImportJobUID       = "jobtoken.dev/importjob-uid"

	// AnnotationTokenRevision is set on the worker Secret and patched onto the Job's pods
	// after every rotation; a pod update makes the kubelet resync the mounted Secret now.
	AnnotationTokenRevision = "jobtoken.dev/token-revision"
	// AnnotationRotateNow on an ImportJob asks for a rotation at once; the operator
	// removes it after rotating.
	AnnotationRotateNow = "jobtoken.dev/rotate-now"

	// Keys of the worker Secret.
	KeyAccessToken = "access_token"
	KeyTokenType   = "token_type"
	KeyExpiresAt   = "expires_at" // RFC 3339

	// TokenVolumeName is the volume the operator injects into the worker pods.
	TokenVolumeName = "jobtoken"
	// DefaultTokenMountPath is where the volume is mounted unless the spec says otherwise.
	DefaultTokenMountPath = "/var/run/secrets/jobtoken.dev"
	// EnvTokenFile names the environment variable that points workers at the token file.
	EnvTokenFile = "JOBTOKEN_FILE"

	// Finalizer is held on an ImportJob until its tokens are revoked.
	Finalizer = "jobtoken.dev/revoke-tokens"
)
