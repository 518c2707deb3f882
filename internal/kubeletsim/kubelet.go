// Package kubeletsim stands in for the kubelet where there is none (envtest, the local
// demo): it projects the Secret of every pod's jobtoken volume into a directory per pod,
// with the kubelet's atomic writer, on the kubelet's schedule:
//
//   - a new pod is mounted at once (the kubelet mounts volumes before starting containers);
//   - a changed Secret reaches the pods that mount it only after SyncDelay (the kubelet's
//     periodic pod sync plus its Secret cache delay, about a minute in a real cluster);
//   - a change of a pod's jobtoken.dev/token-revision annotation syncs that pod at once
//     (a pod update makes the kubelet run its pod sync, which remounts Secret volumes; the
//     operator's "nudge"), reading the Secret fresh from the API server the way the
//     kubelet's cache-based Secret manager does after a pod update;
//   - a deleted Secret leaves the last content in place; a deleted pod's directory is
//     removed.
//
// It watches through client-go informers of its own rather than the manager's cache: the
// manager caches only objects with the operator's labels, while a kubelet sees every pod
// (and every Secret those pods mount) whatever their labels; the informers also hand
// over the old and new pod of an update, which is what detecting an annotation change
// needs; and the stand-in then works with or without a manager, never behind leader
// election, like a kubelet.
package kubeletsim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// Config configures a Kubelet.
type Config struct {
	// Client lists and watches Pods and Secrets (through informers) and reads a Secret
	// afresh when a pod is mounted or nudged. Required.
	Client kubernetes.Interface
	// Root holds a directory per pod: Root/<namespace>/<pod>/. Required.
	Root string
	// SyncDelay is how long a changed Secret takes to reach the pods that mount it (the
	// kubelet's sync period). Zero applies changes at once.
	SyncDelay time.Duration
	// Clock schedules the delayed syncs (clock.RealClock{} when nil; tests pass a fake).
	Clock clock.WithTicker
	// Namespace limits the stand-in to one namespace; empty watches all of them.
	Namespace string
	// Workers is the number of pods synced in parallel (2 when zero).
	Workers int
	// Logger receives the stand-in's logs (names only, never Secret data); when unset, the
	// logger of Start's context is used.
	Logger *logr.Logger
}

// Stats counts what the stand-in did.
type Stats struct {
	// Syncs counts syncs of live pods (including those that found their Secret gone and
	// kept the last content).
	Syncs int64
	// Writes counts the syncs that published new content into a pod's directory.
	Writes int64
	// NudgedSyncs counts the syncs started at once by a change of the pod's
	// AnnotationTokenRevision.
	NudgedSyncs int64
	// NudgedWrites counts the nudged syncs that published new content (the nudge beat the
	// delayed sync).
	NudgedWrites int64
	// SecretChanges counts the Secret changes seen for Secrets that pods mount; each one
	// schedules a sync of those pods after SyncDelay.
	SecretChanges int64
	// Removals counts pod directories removed after their pod was deleted.
	Removals int64
	// Errors counts failed syncs (retried with backoff).
	Errors int64
}

// Kubelet projects the jobtoken Secret volumes of pods into directories. Create it with
// New and run it with Start (it is a controller-runtime manager.Runnable that does not
// need leader election).
type Kubelet struct {
	cfg Config

	started atomic.Bool
	ready   chan struct{}

	mu     sync.Mutex
	nudged map[podKey]bool

	// Set by Start.
	// afterSecretChange, when set before Start, is called after a Secret change scheduled
	// its pods (tests wait for it before moving a fake clock).
	afterSecretChange func(*corev1.Secret)

	queue   workqueue.TypedRateLimitingInterface[podKey]
	podIdx  cache.Indexer
	log     logr.Logger
	counter struct {
		syncs, writes, nudgedSyncs, nudgedWrites, secretChanges, removals, errors atomic.Int64
	}
}

type podKey struct{ namespace, name string }

const (
	secretIndex       = "jobtoken-secret"
	defaultWorkers    = 2
	retryBaseDelay    = 100 * time.Millisecond
	retryMaxDelay     = 10 * time.Second
	podDirPermissions = 0o755
)

// New validates cfg and returns a Kubelet; nothing runs before Start.
func New(cfg Config) (*Kubelet, error) {
	if cfg.Client == nil {
		return nil, errors.New("kubeletsim: Config.Client is required")
	}
	if cfg.Root == "" {
		return nil, errors.New("kubeletsim: Config.Root is required")
	}
	if cfg.SyncDelay < 0 {
		return nil, errors.New("kubeletsim: Config.SyncDelay must not be negative")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = defaultWorkers
	}
	return &Kubelet{cfg: cfg, ready: make(chan struct{}), nudged: map[podKey]bool{}}, nil
}

// PodDir returns the directory of a pod's token volume: Root/<namespace>/<name>.
func (k *Kubelet) PodDir(namespace, name string) string {
	return filepath.Join(k.cfg.Root, namespace, name)
}

// TokenFile returns what JOBTOKEN_FILE names for a container of the pod: the access_token
// of its volume directory.
func (k *Kubelet) TokenFile(namespace, name string) string {
	return filepath.Join(k.PodDir(namespace, name), jobtokenv1alpha1.KeyAccessToken)
}

// Stats returns the counters.
func (k *Kubelet) Stats() Stats {
	c := &k.counter
	return Stats{
		Syncs: c.syncs.Load(), Writes: c.writes.Load(),
		NudgedSyncs: c.nudgedSyncs.Load(), NudgedWrites: c.nudgedWrites.Load(),
		SecretChanges: c.secretChanges.Load(), Removals: c.removals.Load(), Errors: c.errors.Load(),
	}
}

// Ready is closed once Start has listed the existing Pods and Secrets.
func (k *Kubelet) Ready() <-chan struct{} { return k.ready }

// NeedLeaderElection tells a controller-runtime manager to run the stand-in on every
// replica, as every node runs a kubelet.
func (k *Kubelet) NeedLeaderElection() bool { return false }

// Start watches Pods and Secrets and syncs pod directories until ctx is done. It returns
// nil when ctx ends, and may be called once.
func (k *Kubelet) Start(ctx context.Context) error {
	if !k.started.CompareAndSwap(false, true) {
		return errors.New("kubeletsim: already started")
	}
	if k.cfg.Logger != nil {
		k.log = *k.cfg.Logger
	} else {
		k.log = logr.FromContextOrDiscard(ctx)
	}
	k.log = k.log.WithName("kubeletsim")
	if err := os.MkdirAll(k.cfg.Root, podDirPermissions); err != nil {
		return fmt.Errorf("kubeletsim: %w", err)
	}

	k.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[podKey](retryBaseDelay, retryMaxDelay),
		workqueue.TypedRateLimitingQueueConfig[podKey]{Clock: k.cfg.Clock},
	)
	defer k.queue.ShutDown()

	factory := informers.NewSharedInformerFactoryWithOptions(k.cfg.Client, 0,
		informers.WithNamespace(k.cfg.Namespace),
		informers.WithTransform(stripManagedFields))
	defer factory.Shutdown()
	podInformer := factory.Core().V1().Pods().Informer()
	secretInformer := factory.Core().V1().Secrets().Informer()
	if err := podInformer.AddIndexers(cache.Indexers{secretIndex: indexBySecret}); err != nil {
		return fmt.Errorf("kubeletsim: %w", err)
	}
	k.podIdx = podInformer.GetIndexer()
	if _, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    k.podAdded,
		UpdateFunc: k.podUpdated,
		DeleteFunc: k.podDeleted,
	}); err != nil {
		return fmt.Errorf("kubeletsim: %w", err)
	}
	if _, err := secretInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.secretChanged(obj) },
		UpdateFunc: k.secretUpdated,
		// A deleted Secret keeps its last content in the pods (as with the kubelet).
	}); err != nil {
		return fmt.Errorf("kubeletsim: %w", err)
	}

	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.HasSynced, secretInformer.HasSynced) {
		return nil // ctx ended first
	}
	close(k.ready)
	k.log.V(1).Info("started", "root", k.cfg.Root, "syncDelay", k.cfg.SyncDelay, "namespace", k.cfg.Namespace)

	var wg sync.WaitGroup
	for range k.cfg.Workers {
		wg.Go(func() {
			for k.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	k.queue.ShutDown()
	wg.Wait()
	return nil
}

// stripManagedFields keeps the informer caches small.
func stripManagedFields(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	return obj, nil
}

// tokenVolume returns the pod's Secret volume named TokenVolumeName, or nil.
func tokenVolume(pod *corev1.Pod) *corev1.SecretVolumeSource {
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if v.Name == jobtokenv1alpha1.TokenVolumeName && v.Secret != nil && v.Secret.SecretName != "" {
			return v.Secret
		}
	}
	return nil
}

func indexBySecret(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	if v := tokenVolume(pod); v != nil {
		return []string{pod.Namespace + "/" + v.SecretName}, nil
	}
	return nil, nil
}

func (k *Kubelet) podAdded(obj any) {
	if pod, ok := obj.(*corev1.Pod); ok && tokenVolume(pod) != nil {
		k.queue.Add(podKey{pod.Namespace, pod.Name}) // mount at once
	}
}

func (k *Kubelet) podUpdated(oldObj, newObj any) {
	oldPod, ok1 := oldObj.(*corev1.Pod)
	pod, ok2 := newObj.(*corev1.Pod)
	if !ok1 || !ok2 || tokenVolume(pod) == nil {
		return
	}
	rev := jobtokenv1alpha1.AnnotationTokenRevision
	if oldPod.Annotations[rev] == pod.Annotations[rev] {
		return
	}
	key := podKey{pod.Namespace, pod.Name}
	k.mu.Lock()
	k.nudged[key] = true
	k.mu.Unlock()
	k.queue.Add(key)
}

func (k *Kubelet) podDeleted(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok && tokenVolume(pod) != nil {
		k.queue.Add(podKey{pod.Namespace, pod.Name}) // the sync finds it gone and cleans up
	}
}

func (k *Kubelet) secretUpdated(oldObj, newObj any) {
	oldSecret, ok1 := oldObj.(*corev1.Secret)
	secret, ok2 := newObj.(*corev1.Secret)
	if !ok1 || !ok2 || oldSecret.ResourceVersion == secret.ResourceVersion {
		return
	}
	if maps.EqualFunc(oldSecret.Data, secret.Data, func(a, b []byte) bool { return string(a) == string(b) }) {
		return // metadata only: nothing a volume shows changed
	}
	k.secretChanged(secret)
}

// secretChanged schedules the pods that mount the Secret: at once for a pod not mounted
// yet (it waits for its volume), after SyncDelay for the others.
func (k *Kubelet) secretChanged(obj any) {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	pods, err := k.podIdx.ByIndex(secretIndex, secret.Namespace+"/"+secret.Name)
	if err != nil || len(pods) == 0 {
		return
	}
	for _, obj := range pods {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			continue
		}
		key := podKey{pod.Namespace, pod.Name}
		if !k.mounted(key) || k.cfg.SyncDelay == 0 {
			k.queue.Add(key)
		} else {
			k.queue.AddAfter(key, k.cfg.SyncDelay)
		}
	}
	k.counter.secretChanges.Add(1)
	if k.afterSecretChange != nil {
		k.afterSecretChange(secret)
	}
}

func (k *Kubelet) mounted(key podKey) bool {
	_, err := os.Lstat(filepath.Join(k.PodDir(key.namespace, key.name), DataDirName))
	return err == nil
}

func (k *Kubelet) processNext(ctx context.Context) bool {
	key, quit := k.queue.Get()
	if quit {
		return false
	}
	defer k.queue.Done(key)
	k.mu.Lock()
	nudged := k.nudged[key]
	delete(k.nudged, key)
	k.mu.Unlock()

	if err := k.sync(ctx, key, nudged); err != nil {
		if ctx.Err() != nil {
			return true // shutting down: the queue drops the key
		}
		k.counter.errors.Add(1)
		k.log.Error(err, "sync failed; retrying", "namespace", key.namespace, "pod", key.name)
		if nudged {
			k.mu.Lock()
			k.nudged[key] = true
			k.mu.Unlock()
		}
		k.queue.AddRateLimited(key)
		return true
	}
	k.queue.Forget(key)
	return true
}

// sync brings one pod's directory up to date with its Secret, or removes it when the pod
// is gone.
func (k *Kubelet) sync(ctx context.Context, key podKey, nudged bool) error {
	dir := k.PodDir(key.namespace, key.name)
	obj, exists, err := k.podIdx.GetByKey(key.namespace + "/" + key.name)
	if err != nil {
		return err
	}
	if !exists {
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
		_ = os.Remove(filepath.Dir(dir)) // the namespace directory, when empty
		k.counter.removals.Add(1)
		k.log.V(1).Info("pod gone; directory removed", "namespace", key.namespace, "pod", key.name)
		return nil
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	vol := tokenVolume(pod)
	if vol == nil {
		return nil
	}
	k.counter.syncs.Add(1)
	if nudged {
		k.counter.nudgedSyncs.Add(1)
	}

	// Read the Secret afresh: after a pod update the kubelet's Secret manager refetches it,
	// so a nudge that follows a Secret update always sees that update.
	secret, err := k.cfg.Client.CoreV1().Secrets(key.namespace).Get(ctx, vol.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if k.mounted(key) || vol.Optional == nil || !*vol.Optional {
			// Mounted: keep the last content. Not mounted: wait for the Secret (its add
			// event schedules the pod again).
			return nil
		}
		secret = &corev1.Secret{} // an optional Secret that does not exist: empty volume
	} else if err != nil {
		return fmt.Errorf("get Secret %s: %w", vol.SecretName, err)
	}
	files, err := projection(secret, vol)
	if err != nil {
		return err
	}
	wrote, err := writeAtomic(dir, files)
	if err != nil {
		return err
	}
	if wrote {
		k.counter.writes.Add(1)
		if nudged {
			k.counter.nudgedWrites.Add(1)
		}
		k.log.V(1).Info("volume updated", "namespace", key.namespace, "pod", key.name,
			"secret", vol.SecretName, "resourceVersion", secret.ResourceVersion, "nudged", nudged)
	}
	return nil
}

// projection maps the Secret's data to the volume's files as the kubelet does: every key,
// or only the listed items under their paths.
func projection(secret *corev1.Secret, vol *corev1.SecretVolumeSource) (map[string][]byte, error) {
	if len(vol.Items) == 0 {
		return maps.Clone(secret.Data), nil
	}
	files := make(map[string][]byte, len(vol.Items))
	for _, item := range vol.Items {
		data, ok := secret.Data[item.Key]
		if !ok {
			if vol.Optional != nil && *vol.Optional {
				continue
			}
			return nil, fmt.Errorf("the Secret %s has no key %q", vol.SecretName, item.Key)
		}
		files[item.Path] = data
	}
	return files, nil
}
