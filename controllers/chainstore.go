package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/tokenchain"
)

// Names and types of the Secrets the operator keeps. The stored chain (its layout is
// package tokenchain's) lives in the operator's namespace and is never mounted.
const (
	chainSecretNamePrefix  = "importjob-"
	workerSecretNameSuffix = "-token"
	chainSecretType        = corev1.SecretType("jobtoken.dev/vault")
)

// annotationChainIssuer on the stored chain names the issuer of its chain
// ("<kind>/<namespace>/<name>"), so an orphaned chain can still be revoked;
// annotationChainIssuerUID holds that issuer's UID, so that an issuer deleted and
// re-created under the same name is told apart from the one that minted the chain.
// annotationChainIssuerEndpoint holds the origin (scheme://host:port) the issuer's spec
// pointed at when the chain was minted, so that an issuer whose owner points it at
// another server is told apart too.
const (
	annotationChainIssuer         = "jobtoken.dev/issuer"
	annotationChainIssuerUID      = "jobtoken.dev/issuer-uid"
	annotationChainIssuerEndpoint = "jobtoken.dev/issuer-endpoint"
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

// recordedBinding reads the issuer a stored chain records; ok is false for a chain
// stored before issuers were recorded. The UID is empty when only the name was recorded.
func recordedBinding(s *corev1.Secret) (b issuerBinding, ok bool) {
	kind, ns, name := parseIssuerAnnotation(s.Annotations[annotationChainIssuer])
	if name == "" {
		return issuerBinding{}, false
	}
	b = newIssuerBinding(kind, ns, name, types.UID(s.Annotations[annotationChainIssuerUID]))
	b.Endpoint = s.Annotations[annotationChainIssuerEndpoint]
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

// annotate records b on a stored chain.
func (b issuerBinding) annotate(s *corev1.Secret, jobNamespace string) {
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	ns := b.Namespace
	if ns == "" {
		ns = jobNamespace
	}
	s.Annotations[annotationChainIssuer] = string(b.Kind) + "/" + ns + "/" + b.Name
	s.Annotations[annotationChainIssuerUID] = string(b.UID)
	if b.Endpoint != "" {
		s.Annotations[annotationChainIssuerEndpoint] = b.Endpoint
	}
}

func parseIssuerAnnotation(a string) (jobtokenv1alpha1.IssuerKind, string, string) {
	parts := strings.SplitN(a, "/", 3)
	if len(parts) != 3 {
		return "", "", ""
	}
	return jobtokenv1alpha1.IssuerKind(parts[0]), parts[1], parts[2]
}

// chainSecretName names the stored chain's Secret of an ImportJob by its UID, so that a job
// re-created with the same name never inherits another job's chain.
func chainSecretName(job *jobtokenv1alpha1.ImportJob) string {
	return chainSecretNamePrefix + string(job.UID)
}

// workerSecretName names the Secret the workers mount.
func workerSecretName(job *jobtokenv1alpha1.ImportJob) string {
	return job.Name + workerSecretNameSuffix
}

// storedChain is a job's chain record and the Secret it was read from. The Secret's
// resourceVersion gives optimistic concurrency: two writers can never both persist a
// rotation of the same generation.
type storedChain struct {
	tokenchain.Record
	secret *corev1.Secret
}

func decodeChain(s *corev1.Secret) *storedChain {
	return &storedChain{Record: tokenchain.Decode(s.Data), secret: s}
}

// chainStore reads and writes the stored chains in the operator's namespace.
type chainStore struct {
	client    client.Client
	namespace string
}

func (s chainStore) get(ctx context.Context, job *jobtokenv1alpha1.ImportJob) (*storedChain, error) {
	secret := &corev1.Secret{}
	err := s.client.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: chainSecretName(job)}, secret)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the stored chain %s/%s: %w", s.namespace, chainSecretName(job), err)
	}
	return decodeChain(secret), nil
}

// create writes a new stored chain, with the given state, labelled with its ImportJob
// and recording the issuer that is about to mint its chain.
func (s chainStore) create(ctx context.Context, job *jobtokenv1alpha1.ImportJob, by issuerBinding, v *storedChain) (*storedChain, error) {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.namespace,
			Name:      chainSecretName(job),
			Labels: map[string]string{
				jobtokenv1alpha1.LabelManagedBy:          jobtokenv1alpha1.ManagedByValue,
				jobtokenv1alpha1.LabelRole:               jobtokenv1alpha1.RoleVault,
				jobtokenv1alpha1.LabelImportJobName:      job.Name,
				jobtokenv1alpha1.LabelImportJobNamespace: job.Namespace,
				jobtokenv1alpha1.LabelImportJobUID:       string(job.UID),
			},
		},
		Type: chainSecretType,
		Data: v.Encode(),
	}
	by.annotate(secret, job.Namespace)
	if err := s.client.Create(ctx, secret); err != nil {
		return nil, fmt.Errorf("create the stored chain %s/%s: %w", s.namespace, secret.Name, err)
	}
	return decodeChain(secret), nil
}

// update writes v over the Secret it was read from; a conflict means another writer
// changed the chain since, and the caller must start again from a fresh read.
func (s chainStore) update(ctx context.Context, v *storedChain) error {
	secret := v.secret.DeepCopy()
	secret.Data = v.Encode()
	if err := s.client.Update(ctx, secret); err != nil {
		return fmt.Errorf("update the stored chain %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	v.secret = secret
	return nil
}

// saver adapts the store to tokenchain.Store for one stored chain.
type saver struct {
	store chainStore
	chain *storedChain
}

func (sv saver) Save(ctx context.Context, r *tokenchain.Record) error {
	sv.chain.Record = *r
	return sv.store.update(ctx, sv.chain)
}

// bind records by as the issuer of a chain stored before issuers were recorded; the
// chain's tokens are left as they are.
func (s chainStore) bind(ctx context.Context, v *storedChain, by issuerBinding, jobNamespace string) error {
	secret := v.secret.DeepCopy()
	by.annotate(secret, jobNamespace)
	if err := s.client.Update(ctx, secret); err != nil {
		return fmt.Errorf("record the issuer on the stored chain %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	v.secret = secret
	return nil
}

func (s chainStore) delete(ctx context.Context, v *storedChain) error {
	if v == nil {
		return nil
	}
	err := s.client.Delete(ctx, v.secret, client.Preconditions{UID: &v.secret.UID})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the stored chain %s/%s: %w", v.secret.Namespace, v.secret.Name, err)
	}
	return nil
}
