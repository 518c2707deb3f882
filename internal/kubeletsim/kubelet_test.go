//go:build integration

package kubeletsim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"github.com/jobtoken/jobtoken/pkg/tokenfile"
)

// The control plane starts with the first test that needs it (the atomic writer tests do
// not) and stops in TestMain.
var (
	envOnce sync.Once
	env     *testenv.Env
	envErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", err)
		}
	}
	os.Exit(code)
}

func controlPlane(t *testing.T) *testenv.Env {
	t.Helper()
	envOnce.Do(func() { env, envErr = testenv.Start() })
	if envErr != nil {
		t.Fatalf("control plane: %v", envErr)
	}
	return env
}

// Bounds of every wait: long enough for a loaded 2-core machine, never unbounded.
const (
	waitFor  = 20 * time.Second
	pollStep = 20 * time.Millisecond
	// stillFor is how long a "not yet" must hold.
	stillFor = 400 * time.Millisecond
)

type harness struct {
	t     *testing.T
	ctx   context.Context
	cs    kubernetes.Interface
	ns    string
	k     *Kubelet
	clock *clocktesting.FakeClock // nil with the real clock

	mu         sync.Mutex
	seenSecret map[string]bool // resource versions of Secret changes the stand-in scheduled
}

// newHarness starts a Kubelet on a namespace of its own. fake selects a fake clock, which
// the test steps to let SyncDelay pass.
func newHarness(t *testing.T, delay time.Duration, fake bool) *harness {
	t.Helper()
	e := controlPlane(t)
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "kubeletsim-"}}, metav1.CreateOptions{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h := &harness{t: t, ctx: ctx, cs: cs, ns: ns.Name, seenSecret: map[string]bool{}}
	var clk clock.WithTicker = clock.RealClock{}
	if fake {
		h.clock = clocktesting.NewFakeClock(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
		clk = h.clock
	}
	h.k, err = New(Config{Client: cs, Root: t.TempDir(), SyncDelay: delay, Clock: clk, Namespace: ns.Name})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h.k.afterSecretChange = func(s *corev1.Secret) {
		h.mu.Lock()
		h.seenSecret[s.ResourceVersion] = true
		h.mu.Unlock()
	}
	done := make(chan error, 1)
	go func() { done <- h.k.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Start: %v", err)
			}
		case <-time.After(waitFor):
			t.Error("Start did not return after its context ended")
		}
	})
	select {
	case <-h.k.Ready():
	case err := <-done:
		t.Fatalf("Start returned early: %v", err)
	case <-time.After(waitFor):
		t.Fatal("the stand-in's caches did not sync")
	}
	return h
}

// payload is the n-th version of the worker Secret.
func payload(n int) map[string][]byte {
	return map[string][]byte{
		jobtokenv1alpha1.KeyAccessToken: fmt.Appendf(nil, "token-%d", n),
		jobtokenv1alpha1.KeyTokenType:   []byte("Bearer"),
		jobtokenv1alpha1.KeyExpiresAt:   []byte(time.Date(2026, 11, 23, 12, n, 0, 0, time.UTC).Format(time.RFC3339)),
	}
}

func (h *harness) createSecret(name string, n int) {
	h.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name}, Data: payload(n)}
	if _, err := h.cs.CoreV1().Secrets(h.ns).Create(h.ctx, s, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// updateSecret stores version n and waits until the stand-in has seen the change (and so
// scheduled the delayed syncs that a fake clock step then releases).
func (h *harness) updateSecret(name string, n int) {
	h.t.Helper()
	s, err := h.cs.CoreV1().Secrets(h.ns).Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	s.Data = payload(n)
	s, err = h.cs.CoreV1().Secrets(h.ns).Update(h.ctx, s, metav1.UpdateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.eventually("the stand-in saw the Secret update", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.seenSecret[s.ResourceVersion]
	})
}

// createPod creates a pod the way the operator's Job template makes them: the Secret
// volume named "jobtoken", mode 0400, and a revision annotation.
func (h *harness) createPod(name, secretName string) {
	h.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name,
			Annotations: map[string]string{jobtokenv1alpha1.AnnotationTokenRevision: "1"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "example.invalid/worker"}}},
	}
	if secretName != "" { // "" makes a pod without the jobtoken volume
		pod.Spec.Volumes = []corev1.Volume{{Name: jobtokenv1alpha1.TokenVolumeName, VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: secretName, DefaultMode: ptr.To[int32](0o400)}}}}
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: jobtokenv1alpha1.TokenVolumeName,
			MountPath: jobtokenv1alpha1.DefaultTokenMountPath, ReadOnly: true}}
	}
	if _, err := h.cs.CoreV1().Pods(h.ns).Create(h.ctx, pod, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// nudge sets the pod's revision annotation, as the operator does after a rotation.
func (h *harness) nudge(pod, revision string) {
	h.t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, jobtokenv1alpha1.AnnotationTokenRevision, revision)
	if _, err := h.cs.CoreV1().Pods(h.ns).Patch(h.ctx, pod, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// tokenOf reads a pod's token as a worker does; "" while the file is not there.
func (h *harness) tokenOf(pod string) string {
	src, err := tokenfile.New(h.k.TokenFile(h.ns, pod))
	if err != nil {
		return ""
	}
	tok, err := src.Token()
	if err != nil {
		return ""
	}
	return tok.Value
}

func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("after %v: %s", waitFor, what)
		}
		time.Sleep(pollStep)
	}
}

func (h *harness) stillTrue(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(stillFor)
	for time.Now().Before(deadline) {
		if !cond() {
			h.t.Fatalf("no longer true: %s", what)
		}
		time.Sleep(pollStep)
	}
}

// wantStats waits until the counters satisfy cond (they move just after the files do),
// and checks that no sync failed.
func (h *harness) wantStats(what string, cond func(Stats) bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		s := h.k.Stats()
		if s.Errors != 0 {
			h.t.Fatalf("stats %+v: failed syncs", s)
		}
		if cond(s) {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("stats %+v, want %s", s, what)
		}
		time.Sleep(pollStep)
	}
}

func TestSecretProjectedIntoPodDir(t *testing.T) {
	h := newHarness(t, time.Minute, true)
	h.createSecret("worker-token", 1)
	h.createPod("worker-0", "worker-token")
	h.createPod("unrelated", "") // no jobtoken volume
	h.eventually("worker-0 has token-1", func() bool { return h.tokenOf("worker-0") == "token-1" })

	dir := h.k.PodDir(h.ns, "worker-0")
	ts, err := os.Readlink(filepath.Join(dir, DataDirName))
	if err != nil || !tsDirName.MatchString(ts) {
		t.Fatalf("..data -> %q, %v", ts, err)
	}
	for key, want := range payload(1) {
		if target, err := os.Readlink(filepath.Join(dir, key)); err != nil || target != filepath.Join(DataDirName, key) {
			t.Errorf("%s -> %q, %v", key, target, err)
		}
		fi, err := os.Stat(filepath.Join(dir, key))
		if err != nil || fi.Mode().Perm() != 0o400 {
			t.Errorf("%s: %v, %v; want mode 0400", key, fi, err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, key)); string(got) != string(want) {
			t.Errorf("%s differs from the Secret", key)
		}
	}
	src, err := tokenfile.New(h.k.TokenFile(h.ns, "worker-0"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token()
	if err != nil || tok.Type != "Bearer" || !tok.ExpiresAt.Equal(time.Date(2026, 11, 23, 12, 1, 0, 0, time.UTC)) {
		t.Fatalf("token: %v, %v", tok, err)
	}
	if _, err := os.Stat(h.k.PodDir(h.ns, "unrelated")); !os.IsNotExist(err) {
		t.Fatalf("a pod without the jobtoken volume got a directory: %v", err)
	}
	h.wantStats("one write", func(s Stats) bool { return s.Writes == 1 && s.NudgedSyncs == 0 })
}

func TestSecretUpdateReachesPodsAfterSyncDelay(t *testing.T) {
	const delay = time.Minute
	h := newHarness(t, delay, true)
	h.createSecret("worker-token", 1)
	h.createPod("worker-0", "worker-token")
	h.createPod("worker-1", "worker-token")
	h.eventually("both pods mounted", func() bool {
		return h.tokenOf("worker-0") == "token-1" && h.tokenOf("worker-1") == "token-1"
	})
	// Long-lived readers, as workers hold them.
	readers := map[string]*tokenfile.Source{}
	for _, pod := range []string{"worker-0", "worker-1"} {
		src, err := tokenfile.New(h.k.TokenFile(h.ns, pod))
		if err != nil {
			t.Fatal(err)
		}
		readers[pod] = src
	}
	read := func(pod string) string {
		tok, err := readers[pod].Token()
		if err != nil {
			t.Fatalf("%s: %v", pod, err)
		}
		return tok.Value
	}

	h.updateSecret("worker-token", 2)
	h.stillTrue("pods keep token-1 before SyncDelay", func() bool { return read("worker-0") == "token-1" && read("worker-1") == "token-1" })
	h.clock.Step(delay - time.Second)
	h.stillTrue("pods keep token-1 one second before SyncDelay", func() bool { return read("worker-0") == "token-1" && read("worker-1") == "token-1" })
	h.clock.Step(time.Second)
	h.eventually("pods have token-2 after SyncDelay", func() bool { return read("worker-0") == "token-2" && read("worker-1") == "token-2" })

	h.wantStats("4 writes (2 pods x 2 versions) and no nudges", func(s Stats) bool { return s.Writes == 4 && s.NudgedSyncs == 0 })
}

func TestRevisionAnnotationSyncsAtOnce(t *testing.T) {
	const delay = time.Hour
	h := newHarness(t, delay, true)
	h.createSecret("worker-token", 1)
	h.createPod("worker-0", "worker-token")
	h.createPod("worker-1", "worker-token")
	h.eventually("mounted", func() bool { return h.tokenOf("worker-0") == "token-1" && h.tokenOf("worker-1") == "token-1" })

	// Rotation as the operator does it: Secret first, then the pods' revision. The clock
	// does not move; only the nudged pod sees the new token.
	h.updateSecret("worker-token", 2)
	h.nudge("worker-0", "2")
	h.eventually("the nudged pod has token-2 at once", func() bool { return h.tokenOf("worker-0") == "token-2" })
	h.stillTrue("the other pod waits for SyncDelay", func() bool { return h.tokenOf("worker-1") == "token-1" })
	h.wantStats("one nudged sync that wrote", func(s Stats) bool { return s.NudgedSyncs == 1 && s.NudgedWrites == 1 })

	// After SyncDelay the other pod catches up, and the nudged pod's delayed sync is a
	// no-op (same content: nothing written).
	h.clock.Step(delay)
	h.eventually("the other pod has token-2 after SyncDelay", func() bool { return h.tokenOf("worker-1") == "token-2" })
	// 2 mounts, 1 nudge, 2 delayed syncs; the nudged pod's delayed sync wrote nothing.
	h.wantStats("5 syncs, 4 writes", func(s Stats) bool { return s.Syncs >= 5 && s.Writes == 4 && s.NudgedSyncs == 1 })
}

func TestSyncDelayWithRealClock(t *testing.T) {
	const delay = 1500 * time.Millisecond
	h := newHarness(t, delay, false)
	h.createSecret("worker-token", 1)
	h.createPod("worker-0", "worker-token")
	h.eventually("mounted", func() bool { return h.tokenOf("worker-0") == "token-1" })

	start := time.Now()
	h.updateSecret("worker-token", 2)
	h.stillTrue("token-1 right after the update", func() bool { return h.tokenOf("worker-0") == "token-1" })
	h.eventually("token-2 after SyncDelay", func() bool { return h.tokenOf("worker-0") == "token-2" })
	if took := time.Since(start); took < delay {
		t.Fatalf("the update reached the pod after %v, before SyncDelay %v", took, delay)
	}
}

func TestDeletedSecretKeepsContentAndDeletedPodLosesDir(t *testing.T) {
	const delay = time.Minute
	h := newHarness(t, delay, true)
	h.createSecret("worker-token", 1)
	h.createPod("worker-0", "worker-token")
	h.eventually("mounted", func() bool { return h.tokenOf("worker-0") == "token-1" })

	if err := h.cs.CoreV1().Secrets(h.ns).Delete(h.ctx, "worker-token", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.nudge("worker-0", "2") // a sync that finds the Secret gone
	h.eventually("the nudged sync ran", func() bool { return h.k.Stats().NudgedSyncs == 1 })
	h.clock.Step(2 * delay)
	h.stillTrue("the last content stays", func() bool { return h.tokenOf("worker-0") == "token-1" })

	if err := h.cs.CoreV1().Pods(h.ns).Delete(h.ctx, "worker-0", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	dir := h.k.PodDir(h.ns, "worker-0")
	h.eventually("the pod's directory is removed", func() bool {
		_, err := os.Lstat(dir)
		return errors.Is(err, os.ErrNotExist)
	})
	h.wantStats("one removal", func(s Stats) bool { return s.Removals == 1 && s.Writes == 1 })
}
