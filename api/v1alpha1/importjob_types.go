package v1alpha1

import (
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IssuerKind names the kind of issuer an ImportJob refers to.
// +kubebuilder:validation:Enum=TokenIssuer;ClusterTokenIssuer
type IssuerKind string

const (
	// IssuerKindTokenIssuer refers to a TokenIssuer in the ImportJob's namespace.
	IssuerKindTokenIssuer IssuerKind = "TokenIssuer"
	// IssuerKindClusterTokenIssuer refers to a ClusterTokenIssuer.
	IssuerKindClusterTokenIssuer IssuerKind = "ClusterTokenIssuer"
)

// IssuerReference points at the issuer that mints the job's tokens.
type IssuerReference struct {
	// kind of the issuer.
	// +optional
	// +kubebuilder:default=TokenIssuer
	Kind IssuerKind `json:"kind,omitempty"`
	// name of the issuer.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// GrantType is how the job's token pair is minted.
// +kubebuilder:validation:Enum=ClientCredentials;Password;TokenExchange;RefreshToken
type GrantType string

const (
	// GrantClientCredentials mints with the issuer's client credentials; it can re-mint at any time.
	GrantClientCredentials GrantType = "ClientCredentials"
	// GrantPassword mints with a (system) user's name and password; it can re-mint at any time.
	GrantPassword GrantType = "Password"
	// GrantTokenExchange exchanges the submitter's token once, at start (RFC 8693).
	GrantTokenExchange GrantType = "TokenExchange"
	// GrantRefreshToken redeems a handed-over refresh token once, at start.
	GrantRefreshToken GrantType = "RefreshToken"
)

// PasswordGrant names the Secret that holds a user name and password.
type PasswordGrant struct {
	// secretRef names the Secret in the ImportJob's namespace.
	// +required
	SecretRef LocalSecretReference `json:"secretRef"`
	// usernameKey is the key of the user name.
	// +optional
	// +kubebuilder:default=username
	// +kubebuilder:validation:MaxLength=253
	UsernameKey string `json:"usernameKey,omitempty"`
	// passwordKey is the key of the password.
	// +optional
	// +kubebuilder:default=password
	// +kubebuilder:validation:MaxLength=253
	PasswordKey string `json:"passwordKey,omitempty"`
}

// LocalSecretReference names a Secret in the ImportJob's namespace.
type LocalSecretReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// TokenExchangeGrant exchanges the submitter's token for the job's own pair (RFC 8693).
type TokenExchangeGrant struct {
	// subjectTokenSecretRef names the Secret key that holds the submitter's token
	// (default key "token").
	// +required
	SubjectTokenSecretRef SecretKeySelector `json:"subjectTokenSecretRef"`
	// subjectTokenType is the RFC 8693 type of the subject token.
	// +optional
	// +kubebuilder:default="urn:ietf:params:oauth:token-type:access_token"
	// +kubebuilder:validation:MaxLength=256
	SubjectTokenType string `json:"subjectTokenType,omitempty"`
	// requestedTokenType is the RFC 8693 type asked for; empty leaves it to the issuer.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	RequestedTokenType string `json:"requestedTokenType,omitempty"`
	// removeAfterRedeem deletes the submitter's token from its Secret once exchanged,
	// so that no user token lingers in the cluster.
	// +optional
	// +kubebuilder:default=true
	RemoveAfterRedeem *bool `json:"removeAfterRedeem,omitempty"`
}

// RefreshTokenGrant redeems a handed-over (offline) refresh token once, at start.
type RefreshTokenGrant struct {
	// secretRef names the Secret key that holds the refresh token (default key "refresh_token").
	// +required
	SecretRef SecretKeySelector `json:"secretRef"`
	// removeAfterRedeem deletes the refresh token from its Secret once redeemed: it is
	// dead after its first use anyway where the issuer rotates refresh tokens.
	// +optional
	// +kubebuilder:default=true
	RemoveAfterRedeem *bool `json:"removeAfterRedeem,omitempty"`
}

// CredentialsSpec is the grant that mints the job's first pair, and later ones where the
// grant allows it. The field named after the grant must be set, and no other.
// +kubebuilder:validation:XValidation:rule="self.grant == 'Password' ? has(self.password) : !has(self.password)",message="password is required for, and only allowed with, grant Password"
// +kubebuilder:validation:XValidation:rule="self.grant == 'TokenExchange' ? has(self.tokenExchange) : !has(self.tokenExchange)",message="tokenExchange is required for, and only allowed with, grant TokenExchange"
// +kubebuilder:validation:XValidation:rule="self.grant == 'RefreshToken' ? has(self.refreshToken) : !has(self.refreshToken)",message="refreshToken is required for, and only allowed with, grant RefreshToken"
type CredentialsSpec struct {
	// grant mints the job's tokens. ClientCredentials and Password can mint a fresh pair
	// whenever the refresh chain ends; TokenExchange and RefreshToken are redeemed once.
	// +required
	Grant GrantType `json:"grant"`
	// password holds the Secret for grant Password.
	// +optional
	Password *PasswordGrant `json:"password,omitempty"`
	// tokenExchange holds the Secret for grant TokenExchange.
	// +optional
	TokenExchange *TokenExchangeGrant `json:"tokenExchange,omitempty"`
	// refreshToken holds the Secret for grant RefreshToken.
	// +optional
	RefreshToken *RefreshTokenGrant `json:"refreshToken,omitempty"`
	// scopes requested; empty uses the issuer's default scopes.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	Scopes []string `json:"scopes,omitempty"`
	// audience requested; empty uses the issuer's default audience.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=512
	Audience []string `json:"audience,omitempty"`
}

// RotationSpec says when the access token is replaced.
type RotationSpec struct {
	// fraction of the token lifetime after which it is rotated, a decimal strictly
	// between 0 and 1. Rotation also happens no later than propagationBudget before expiry.
	// +optional
	// +kubebuilder:default="0.7"
	// +kubebuilder:validation:MaxLength=8
	// +kubebuilder:validation:Pattern=`^(0?\.[0-9]+|[01](\.[0-9]*)?)$`
	// +kubebuilder:validation:XValidation:rule="double(self) > 0.0 && double(self) < 1.0",message="fraction must be strictly between 0 and 1"
	Fraction string `json:"fraction,omitempty"`
	// jitter spreads rotations of many jobs: each rotation is moved earlier by up to this
	// fraction of the token lifetime (a decimal from 0 to 0.5), the same for the same job
	// and token, so restarts do not move it.
	// +optional
	// +kubebuilder:default="0.1"
	// +kubebuilder:validation:MaxLength=8
	// +kubebuilder:validation:Pattern=`^(0?\.[0-9]+|0)$`
	// +kubebuilder:validation:XValidation:rule="double(self) >= 0.0 && double(self) <= 0.5",message="jitter must be between 0 and 0.5"
	Jitter string `json:"jitter,omitempty"`
	// propagationBudget is how long a new token may take to reach the workers' files
	// (kubelet sync); the new token is written at least this long before the old one expires.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="propagationBudget must be positive"
	PropagationBudget *metav1.Duration `json:"propagationBudget,omitempty"`
	// maxLifetime caps how long the job holds credentials: past it, the tokens are
	// revoked even if the job is still running (the Job itself is left alone).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="maxLifetime must be positive"
	MaxLifetime *metav1.Duration `json:"maxLifetime,omitempty"`
	// nudgePods patches the Job's pods with the new token revision after each rotation,
	// so the kubelet updates the mounted file at once instead of at its next periodic sync.
	// +optional
	// +kubebuilder:default=true
	NudgePods *bool `json:"nudgePods,omitempty"`
}

// ImportJobSpec is the desired state of an ImportJob.
type ImportJobSpec struct {
	// issuerRef names the issuer that mints the job's tokens. It is immutable: the job's
	// refresh token is only ever sent to the issuer that minted it.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.issuerRef is immutable"
	IssuerRef IssuerReference `json:"issuerRef"`
	// credentials is the grant that mints the job's tokens. It is immutable, like issuerRef.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.credentials is immutable"
	Credentials CredentialsSpec `json:"credentials"`
	// rotation says when the access token is replaced.
	// +optional
	// +kubebuilder:default={}
	Rotation RotationSpec `json:"rotation,omitempty"`
	// tokenMountPath is where the token volume is mounted in every container; the token
	// file is <tokenMountPath>/access_token and JOBTOKEN_FILE points at it.
	// +optional
	// +kubebuilder:default="/var/run/secrets/jobtoken.dev"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	TokenMountPath string `json:"tokenMountPath,omitempty"`
	// template is the batch Job run as workers. The operator creates it once the first
	// token is in place, and injects the token volume and JOBTOKEN_FILE into every
	// container. It must not mount the token Secret itself: the volume name jobtoken is
	// refused at admission, and a template that mounts the volume or the Secret
	// <name>-token on its own (for example through subPath, which the kubelet never
	// updates) is refused by the operator with the Stalled condition.
	// +required
	// +kubebuilder:validation:XValidation:rule="!has(self.spec.template.spec.volumes) || self.spec.template.spec.volumes.all(v, v.name != 'jobtoken')",message="spec.template.spec.template.spec.volumes: the volume name jobtoken is reserved for the token volume the operator injects"
	Template batchv1.JobTemplateSpec `json:"template"`
}

// ImportJobPhase is a coarse summary of the ImportJob's lifecycle.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Expired
type ImportJobPhase string

const (
	// PhasePending means waiting for the issuer, minting the first token, or creating the Job.
	PhasePending ImportJobPhase = "Pending"
	// PhaseRunning means the Job runs and its token is kept fresh.
	PhaseRunning ImportJobPhase = "Running"
	// PhaseSucceeded means the Job completed; tokens revoked.
	PhaseSucceeded ImportJobPhase = "Succeeded"
	// PhaseFailed means the Job failed, or the job's credentials could not be obtained; tokens revoked.
	PhaseFailed ImportJobPhase = "Failed"
	// PhaseExpired means maxLifetime was reached; tokens revoked while the Job may still run.
	PhaseExpired ImportJobPhase = "Expired"
)

// ImportJobStatus is the observed state of an ImportJob. It never holds token material.
type ImportJobStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// phase summarises the lifecycle.
	// +optional
	Phase ImportJobPhase `json:"phase,omitempty"`
	// conditions: Ready, Reconciling, Stalled, CredentialsReady, TokenRefreshFailed,
	// CredentialsLost, SessionExpiring, Revoked, RevocationFailed, PropagationBudgetUnmet.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
	// jobName is the batch Job running the workers.
	// +optional
	JobName string `json:"jobName,omitempty"`
	// secretName is the Secret in this namespace that workers mount.
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// tokenIssuedAt is when the current access token was received (operator's clock).
	// +optional
	TokenIssuedAt *metav1.Time `json:"tokenIssuedAt,omitempty"`
	// tokenExpiresAt is when the current access token expires (operator's clock).
	// +optional
	TokenExpiresAt *metav1.Time `json:"tokenExpiresAt,omitempty"`
	// nextRotationTime is when the next rotation is due.
	// +optional
	NextRotationTime *metav1.Time `json:"nextRotationTime,omitempty"`
	// lastRotationTime is when the token was last replaced.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`
	// sessionExpiresAt is when the refresh chain ends (the issuer's session maximum or
	// refresh-token expiry), where the issuer reports it.
	// +optional
	SessionExpiresAt *metav1.Time `json:"sessionExpiresAt,omitempty"`
	// lastFailureTime is when a token request last failed.
	// +optional
	LastFailureTime *metav1.Time `json:"lastFailureTime,omitempty"`
	// failedRotationAttempts counts token requests that failed since the last success.
	// +optional
	FailedRotationAttempts int32 `json:"failedRotationAttempts,omitempty"`
	// rotations counts access tokens written after the first.
	// +optional
	Rotations int64 `json:"rotations,omitempty"`
	// remints counts fresh pairs minted with the grant after the first.
	// +optional
	Remints int64 `json:"remints,omitempty"`
	// tokenRevision increases with every token written to the worker Secret.
	// +optional
	TokenRevision int64 `json:"tokenRevision,omitempty"`
	// tokenKeyID is the signing key id ("kid") of the current access token, when it is a
	// JWT; the token is rotated at once when the issuer stops publishing that key.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	TokenKeyID string `json:"tokenKeyID,omitempty"`
	// revocationStartTime is when revocation was first attempted; retries stop after the
	// operator's revocation budget.
	// +optional
	RevocationStartTime *metav1.Time `json:"revocationStartTime,omitempty"`
	// startTime is when the first token was minted; maxLifetime counts from it.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
}

// ImportJob runs a batch Job whose workers get their own OAuth2 access token, kept
// fresh in a mounted Secret and revoked when the job ends.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ij,categories=jobtoken
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Rotations",type=integer,JSONPath=`.status.rotations`
// +kubebuilder:printcolumn:name="Expires",type=date,JSONPath=`.status.tokenExpiresAt`
// +kubebuilder:printcolumn:name="Next",type=date,JSONPath=`.status.nextRotationTime`,priority=1
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ImportJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec ImportJobSpec `json:"spec"`
	// status is the observed state.
	// +optional
	Status ImportJobStatus `json:"status,omitempty"`
}

// ImportJobList is a list of ImportJobs.
// +kubebuilder:object:root=true
type ImportJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ImportJob `json:"items"`
}
