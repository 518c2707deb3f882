package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// Keys of the vault Secret, which lives in the operator's namespace and is never mounted.
const (
	vaultKeyRefreshToken     = "refresh_token"
	vaultKeyAccessToken      = "access_token"
	vaultKeyChainEndsAt      = "chain_ends_at"
	vaultKeyGeneration       = "generation"
	vaultKeyInFlight         = "in_flight"
	vaultKeyGrantRedeemed    = "grant_redeemed"
	vaultKeyIssuedAt         = "issued_at"
	vaultKeyExpiresAt        = "expires_at"
	vaultKeyTokenType        = "token_type"
	vaultKeyKeyID            = "kid"
	inFlightOpRefresh        = "refresh"
	inFlightOpRedeem         = "redeem"
	vaultSecretNamePrefix    = "importjob-"
	workerSecretNameSuffix   = "-token"
	vaultFieldManager        = "jobtoken"
	inFlightSeparator        = "@"
	inFlightGenerationSep    = "#"
	timeFormat               = time.RFC3339Nano
	vaultSecretTypeAnnotated = corev1.SecretType("jobtoken.dev/vault")
)

// annotationVaultIssuer on a vault Secret names the issuer of its chain
// ("<kind>/<namespace>/<name>"), so an orphaned chain can still be revoked;
// annotationVaultIssuerUID holds that issuer's UID, so that an issuer deleted and
// re-created under the same name is told apart from the one that minted the chain.
// annotationVaultIssuerEndpoint holds the origin (scheme://host:port) the issuer's spec
// pointed at when the chain was minted, so that an issuer whose owner points it at
// another server is told apart too.
const (
	annotationVaultIssuer         = "jobtoken.dev/issuer"
	annotationVaultIssuerUID      = "jobtoken.dev/issuer-uid"
	annotationVaultIssuerEndpoint = "jobtoken.dev/issuer-endpoint"
)

// issuerBinding identifies one issuer object: a refresh chain is only ever sent to the
// issuer that minted it.
type issuerBinding struct {
	Kind jobtokenv1alpha1.IssuerKind
	// Namespace is empty for a ClusterTokenIssuer.
	Namespace string
	Name      string
	UID       types.UID
	// Endpoint is the origin the issuer's spec named; empty when not recorded.
	Endpoint string
}

func newIssuerBinding(kind jobtokenv1alpha1.IssuerKind, namespace, name string, uid types.UID) issuerBinding {
	if kind == "" {
		kind = jobtokenv1alpha1.IssuerKindTokenIssuer
	}
	if kind == jobtokenv1alpha1.IssuerKindClusterTokenIssuer {
		namespace = ""
	}
	return issuerBinding{Kind: kind, Namespace: namespace, Name: name, UID: uid}
}

// currentBinding is the issuer the job names now, as resolved to ref.
func currentBinding(job *jobtokenv1alpha1.ImportJob, ref *issuerRef) issuerBinding {
	b := newIssuerBinding(job.Spec.IssuerRef.Kind, job.Namespace, job.Spec.IssuerRef.Name, ref.UID)
	b.Endpoint = ref.origin()
	return b
}

// recordedBinding reads the issuer a vault Secret records; ok is false for a chain
// stored before issuers were recorded. The UID is empty when only the name was recorded.
func recordedBinding(s *corev1.Secret) (b issuerBinding, ok bool) {
	kind, ns, name := parseIssuerAnnotation(s.Annotations[annotationVaultIssuer])
	if name == "" {
		return issuerBinding{}, false
	}
	b = newIssuerBinding(kind, ns, name, types.UID(s.Annotations[annotationVaultIssuerUID]))
	b.Endpoint = s.Annotations[annotationVaultIssuerEndpoint]
	return b, true
}

// moved tells whether the issuer o, the same object as b, now points at another server
// than the one b recorded; an unrecorded endpoint matches any.
func (b issuerBinding) moved(o issuerBinding) bool {
	return b.Endpoint != "" && o.Endpoint != "" && b.Endpoint != o.Endpoint
}

// sameObject tells whether b and o name the same issuer; an unrecorded UID on either
// side matches any.
func (b issuerBinding) sameObject(o issuerBinding) bool {
	return b.Kind == o.Kind && b.Namespace == o.Namespace && b.Name == o.Name &&
		(b.UID == "" || o.UID == "" || b.UID == o.UID)
}

func (b issuerBinding) String() string {
	name := string(b.Kind) + "/" + b.Name
	if b.Namespace != "" {
		name = string(b.Kind) + "/" + b.Namespace + "/" + b.Name
	}
	if b.UID == "" {
		return name
	}
	return name + " (uid " + string(b.UID) + ")"
}

// annotate records b on a vault Secret.
func (b issuerBinding) annotate(s *corev1.Secret, jobNamespace string) {
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	ns := b.Namespace
	if ns == "" {
		ns = jobNamespace
	}
	s.Annotations[annotationVaultIssuer] = string(b.Kind) + "/" + ns + "/" + b.Name
	s.Annotations[annotationVaultIssuerUID] = string(b.UID)
	if b.Endpoint != "" {
		s.Annotations[annotationVaultIssuerEndpoint] = b.Endpoint
	}
}

func parseIssuerAnnotation(a string) (jobtokenv1alpha1.IssuerKind, string, string) {
	parts := strings.SplitN(a, "/", 3)
	if len(parts) != 3 {
		return "", "", ""
	}
	return jobtokenv1alpha1.IssuerKind(parts[0]), parts[1], parts[2]
}

// vaultSecretName names the vault Secret of an ImportJob by its UID, so that a job
// re-created with the same name never inherits another job's chain.
func vaultSecretName(job *jobtokenv1alpha1.ImportJob) string {
	return vaultSecretNamePrefix + string(job.UID)
}

// workerSecretName names the Secret the workers mount.
func workerSecretName(job *jobtokenv1alpha1.ImportJob) string {
	return job.Name + workerSecretNameSuffix
}

// vault is the decoded vault Secret. The Secret's resourceVersion gives optimistic
// concurrency: two writers can never both persist a rotation of the same generation.
type vault struct {
	secret *corev1.Secret

	RefreshToken string
	AccessToken  string
	ChainEndsAt  time.Time
	Generation   int64
	// InFlight is set while a refresh or a one-shot redeem is under way: "op#gen@time".
	// Found set by a later reconcile, it means the outcome is unknown and the token it
	// used must never be replayed.
	InFlight string
	// IssuedAt, ExpiresAt, TokenType and KeyID describe the current access token.
	IssuedAt  time.Time
	ExpiresAt time.Time
	TokenType string
	KeyID     string
	// GrantRedeemed is set once a one-shot grant input (TokenExchange, RefreshToken) was used.
	GrantRedeemed bool
}

func decodeVault(s *corev1.Secret) *vault {
	v := &vault{secret: s}
	v.RefreshToken = string(s.Data[vaultKeyRefreshToken])
	v.AccessToken = string(s.Data[vaultKeyAccessToken])
	v.ChainEndsAt = parseTime(s.Data[vaultKeyChainEndsAt])
	v.IssuedAt = parseTime(s.Data[vaultKeyIssuedAt])
	v.ExpiresAt = parseTime(s.Data[vaultKeyExpiresAt])
	v.TokenType = string(s.Data[vaultKeyTokenType])
	v.KeyID = string(s.Data[vaultKeyKeyID])
	v.Generation, _ = strconv.ParseInt(string(s.Data[vaultKeyGeneration]), 10, 64)
	v.InFlight = string(s.Data[vaultKeyInFlight])
	v.GrantRedeemed = string(s.Data[vaultKeyGrantRedeemed]) == "true"
	return v
}

func (v *vault) encode() map[string][]byte {
	data := map[string][]byte{
		vaultKeyRefreshToken: []byte(v.RefreshToken),
		vaultKeyAccessToken:  []byte(v.AccessToken),
		vaultKeyGeneration:   []byte(strconv.FormatInt(v.Generation, 10)),
		vaultKeyInFlight:     []byte(v.InFlight),
	}
	putTime(data, vaultKeyChainEndsAt, v.ChainEndsAt)
	putTime(data, vaultKeyIssuedAt, v.IssuedAt)
	putTime(data, vaultKeyExpiresAt, v.ExpiresAt)
	putString(data, vaultKeyTokenType, v.TokenType)
	putString(data, vaultKeyKeyID, v.KeyID)
	if v.GrantRedeemed {
		data[vaultKeyGrantRedeemed] = []byte("true")
	}
	return data
}

func parseTime(b []byte) time.Time {
	t, err := time.Parse(timeFormat, string(b))
	if err != nil {
		return time.Time{}
	}
	return t
}

func putTime(data map[string][]byte, key string, t time.Time) {
	if !t.IsZero() {
		data[key] = []byte(t.UTC().Format(timeFormat))
	}
}

func putString(data map[string][]byte, key, v string) {
	if v != "" {
		data[key] = []byte(v)
	}
}

// inFlightOp returns the operation of the in-flight marker ("refresh" or "redeem").
func (v *vault) inFlightOp() string {
	op, _, _ := strings.Cut(v.InFlight, inFlightGenerationSep)
	return op
}

func inFlightMarker(op string, generation int64, now time.Time) string {
	return fmt.Sprintf("%s%s%d%s%s", op, inFlightGenerationSep, generation, inFlightSeparator, now.UTC().Format(time.RFC3339))
}

// setTokens records a fresh token set and clears the in-flight marker.
func (v *vault) setTokens(ts *issuer.TokenSet) {
	v.AccessToken = ts.AccessToken
	v.RefreshToken = ts.RefreshToken
	v.IssuedAt = ts.IssuedAt
	v.ExpiresAt = ts.ExpiresAt
	v.TokenType = ts.TokenType
	v.KeyID = ts.KeyID
	v.ChainEndsAt = chainEnd(ts)
	v.Generation++
	v.InFlight = ""
}

// chainEnd is the earlier of the refresh-token expiry and the session maximum.
func chainEnd(ts *issuer.TokenSet) time.Time {
	end := ts.RefreshExpiresAt
	if !ts.SessionExpiresAt.IsZero() && (end.IsZero() || ts.SessionExpiresAt.Before(end)) {
		end = ts.SessionExpiresAt
	}
	return end
}

// vaultStore reads and writes vault Secrets in the operator's namespace.
type vaultStore struct {
	client    client.Client
	namespace string
}

func (s vaultStore) get(ctx context.Context, job *jobtokenv1alpha1.ImportJob) (*vault, error) {
	secret := &corev1.Secret{}
	err := s.client.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: vaultSecretName(job)}, secret)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read vault Secret %s/%s: %w", s.namespace, vaultSecretName(job), err)
	}
	return decodeVault(secret), nil
}

// create writes a new vault Secret, with the given state, labelled with its ImportJob
// and recording the issuer that is about to mint its chain.
func (s vaultStore) create(ctx context.Context, job *jobtokenv1alpha1.ImportJob, by issuerBinding, v *vault) (*vault, error) {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.namespace,
			Name:      vaultSecretName(job),
			Labels: map[string]string{
				jobtokenv1alpha1.LabelManagedBy:          jobtokenv1alpha1.ManagedByValue,
				jobtokenv1alpha1.LabelRole:               jobtokenv1alpha1.RoleVault,
				jobtokenv1alpha1.LabelImportJobName:      job.Name,
				jobtokenv1alpha1.LabelImportJobNamespace: job.Namespace,
				jobtokenv1alpha1.LabelImportJobUID:       string(job.UID),
			},
		},
		Type: vaultSecretTypeAnnotated,
		Data: v.encode(),
	}
	by.annotate(secret, job.Namespace)
	if err := s.client.Create(ctx, secret); err != nil {
		return nil, fmt.Errorf("create vault Secret %s/%s: %w", s.namespace, secret.Name, err)
	}
	return decodeVault(secret), nil
}

// update writes v over the Secret it was read from; a conflict means another writer
// changed the chain since, and the caller must start again from a fresh read.
func (s vaultStore) update(ctx context.Context, v *vault) error {
	secret := v.secret.DeepCopy()
	secret.Data = v.encode()
	if err := s.client.Update(ctx, secret); err != nil {
		return fmt.Errorf("update vault Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	v.secret = secret
	return nil
}

// bind records by as the issuer of a chain stored before issuers were recorded; the
// chain's tokens are left as they are.
func (s vaultStore) bind(ctx context.Context, v *vault, by issuerBinding, jobNamespace string) error {
	secret := v.secret.DeepCopy()
	by.annotate(secret, jobNamespace)
	if err := s.client.Update(ctx, secret); err != nil {
		return fmt.Errorf("record the issuer on vault Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	v.secret = secret
	return nil
}

func (s vaultStore) delete(ctx context.Context, v *vault) error {
	if v == nil {
		return nil
	}
	err := s.client.Delete(ctx, v.secret, client.Preconditions{UID: &v.secret.UID})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete vault Secret %s/%s: %w", v.secret.Namespace, v.secret.Name, err)
	}
	return nil
}
