// Package e2e proves the operator on a real single-node cluster (internal/realnode): the
// manager image deployed with config/default (its own ServiceAccount, RBAC and leader
// election), the development issuer on the host, and ImportJobs whose workers are real
// containers reading the token file the kubelet keeps up to date. It measures how long a
// rotated token takes to reach the containers with pod nudging on and off, deletes the
// leading manager pod mid-run, and checks that the Job controller's verdict (Complete or
// Failed) ends with every token revoked and both Secrets gone.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/manager"
	"github.com/jobtoken/jobtoken/internal/realnode"
	"github.com/jobtoken/jobtoken/internal/scheme"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

const (
	operatorNamespace = "jobtoken-system"
	jobNamespace      = "e2e-import"
	clientID          = "import-jobs"
	clientSecret      = "import-jobs-secret"
	systemUser        = "import-bot"
	systemPass        = "import-bot-pw"
	// Names of the ImportJobs.
	mainJob    = "records"      // nudging on, 20 s tokens, failover in the middle
	offJob     = "records-slow" // nudging off, long tokens: the kubelet's own sync
	failingJob = "broken"       // a worker that exits 1 past backoffLimit
	workerUser = 65532
	// maxWorkers bounds the worker pods of one job: the node has room for about 40 pods.
	maxWorkers = 20
)

// Options configure a run.
type Options struct {
	NodeBinDir, K8sBinDir, ImagesDir, Kubectl, RepoRoot string
	ManagerImage, WorkerImage                           string
	// Duration is how long the workers of the main job import.
	Duration time.Duration
	Workers  int
	// Rate is each worker's calls per second (one record per call); its inverse is the
	// resolution of the propagation measurement.
	Rate float64
	// AccessTTL is the access-token lifetime of the main job's issuer; Budget the main
	// job's propagation budget.
	AccessTTL, Budget time.Duration
	// OffAccessTTL and OffBudget are the nudging-off job's: the token must outlive the
	// kubelet's periodic sync.
	OffAccessTTL, OffBudget time.Duration
	OffWorkers              int
	// FailoverAt is when, after the main job's workers start, the leading manager pod is
	// deleted with --force --grace-period=0.
	FailoverAt time.Duration
	WorkDir    string
	Out        io.Writer
	// Helm is the helm binary RunInstalls renders Chart with (default charts/jobtoken, or
	// a packaged chart); ReleaseManifest an install.yaml it applies instead of writing one
	// with hack/release.sh.
	Helm, Chart, ReleaseManifest string
	// InstallDuration is how long the worker of each RunInstalls phase imports.
	InstallDuration time.Duration
}

// Defaults fills unset fields.
func (o *Options) Defaults() {
	if o.ManagerImage == "" {
		o.ManagerImage = "jobtoken/manager:dev"
	}
	if o.WorkerImage == "" {
		o.WorkerImage = "jobtoken/example-worker:dev"
	}
	if o.Duration == 0 {
		o.Duration = 3 * time.Minute
	}
	if o.Workers <= 0 || o.Workers > maxWorkers {
		o.Workers = 3
	}
	if o.Rate == 0 {
		o.Rate = 5
	}
	if o.AccessTTL == 0 {
		o.AccessTTL = 20 * time.Second
	}
	if o.Budget == 0 {
		o.Budget = 5 * time.Second
	}
	if o.OffAccessTTL == 0 {
		o.OffAccessTTL = 150 * time.Second
	}
	if o.OffBudget == 0 {
		o.OffBudget = 120 * time.Second
	}
	if o.OffWorkers <= 0 || o.OffWorkers > maxWorkers {
		o.OffWorkers = 2
	}
	if o.FailoverAt == 0 {
		o.FailoverAt = o.Duration * 2 / 5
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Chart == "" {
		o.Chart = defaultChart
	}
	if o.InstallDuration <= 0 {
		o.InstallDuration = 45 * time.Second
	}
}

// Report is what a run measured.
type Report struct {
	ClusterStart, ManagerReady time.Duration
	ManagerPods                []string // name, image, service account
	APIService                 string   // how pods reach the API server
	Main, Off                  *JobResult
	Failing                    *JobResult
	PropagationOn              dist
	PropagationOff             dist
	Failover                   Failover
	RefreshReuse               int64 // both issuers
	Elapsed                    time.Duration
	Problems                   []string
}

// JobResult is one ImportJob's outcome.
type JobResult struct {
	Name                 string
	Workers              int
	RecordsExpected      int64
	RecordsImported      int64 // the issuer's accepted calls from this job's pods
	Issuer401            int64 // the issuer's 401s at its protected resource
	WorkerSummaries      []string
	Rotations            int64
	Writes               int
	JobCondition         string // Complete or Failed, set by the Job controller
	Phase                jobtokenv1alpha1.ImportJobPhase
	Revoked              bool
	TokensMinted         int
	TokensActiveAfterEnd int
	WorkerSecretGone     bool
	VaultSecretGone      bool
	EndToRevoked         time.Duration
}

// Failover is the manager failover's outcome.
type Failover struct {
	Deleted, NewLeader string
	Takeover           time.Duration
	Done               bool
}

type issuerSide struct {
	srv  *devissuer.Server
	rec  *useRecorder
	url  string
	http *http.Server
}

func startIssuer(host string, ttl time.Duration) (*issuerSide, error) {
	s, err := devissuer.New(devissuer.Config{
		AccessTokenTTL: ttl,
		Clients:        map[string]string{clientID: clientSecret},
		Users:          map[string]string{systemUser: systemPass},
		RecordTokens:   true,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	rec := newUseRecorder(s.Handler())
	hs := &http.Server{Handler: rec, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return &issuerSide{srv: s, rec: rec, url: "http://" + ln.Addr().String(), http: hs}, nil
}

// startCluster starts the real node with the images of o.ImagesDir (directories separated
// by commas) imported; stop keeps
// the components' logs in the work directory and tears the cluster down.
func startCluster(ctx context.Context, o Options, say func(string, ...any)) (cl *realnode.Cluster, stop func(), err error) {
	t0 := time.Now()
	var images []string
	for _, dir := range strings.Split(o.ImagesDir, ",") {
		found, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
		images = append(images, found...)
	}
	if len(images) < 3 {
		return nil, nil, fmt.Errorf("want the manager, example-worker and pause archives in %s (make image), found %d", o.ImagesDir, len(images))
	}
	say("starting a real single-node cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy")
	nodeLog, err := os.Create(filepath.Join(o.WorkDir, "node.log"))
	if err != nil {
		return nil, nil, err
	}
	cl, err = realnode.Start(ctx, realnode.Config{
		NodeBinDir: o.NodeBinDir, K8sBinDir: o.K8sBinDir, Images: images, Log: nodeLog,
	})
	if err != nil {
		_ = nodeLog.Close()
		return nil, nil, err
	}
	logsOut := filepath.Join(o.WorkDir, "logs")
	stop = func() {
		// Keep the components' logs for a failed run's diagnosis.
		_ = os.RemoveAll(logsOut)
		_ = exec.Command("cp", "-r", cl.LogDir(), logsOut).Run()
		say("stopping the cluster (logs kept in %s)", logsOut)
		cl.Stop()
		_ = nodeLog.Close()
	}
	say("cluster ready in %s (node Ready, API server at %s; images imported: %d)", time.Since(t0).Round(100*time.Millisecond), cl.APIServerURL, len(images))
	return cl, stop, nil
}

// Run performs the end-to-end run. It starts and stops the cluster.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	o.Defaults()
	start := time.Now()
	rep = &Report{}
	say := func(format string, args ...any) {
		_, _ = fmt.Fprintf(o.Out, "[%6s] %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
	cl, stopCluster, err := startCluster(ctx, o, say)
	if err != nil {
		return nil, err
	}
	defer stopCluster()
	rep.ClusterStart = time.Since(start)

	cs := cl.Clientset
	c, err := client.New(cl.RestConfig, client.Options{Scheme: scheme.New()})
	if err != nil {
		return rep, err
	}

	// The issuers, on the bridge so that pods reach them.
	fast, err := startIssuer(cl.HostIP.String(), o.AccessTTL)
	if err != nil {
		return rep, err
	}
	defer func() { _ = fast.http.Close() }()
	slow, err := startIssuer(cl.HostIP.String(), o.OffAccessTTL)
	if err != nil {
		return rep, err
	}
	defer func() { _ = slow.http.Close() }()
	say("development issuers on the bridge: %s (access tokens %s), %s (access tokens %s)", fast.url, o.AccessTTL, slow.url, o.OffAccessTTL)

	// The operator, as shipped.
	kubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, o.Kubectl, append([]string{"--kubeconfig", cl.AdminKubeconfig}, args...)...)
		cmd.Dir = o.RepoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return string(out), nil
	}
	mstart := time.Now()
	if _, err := kubectl("apply", "--server-side", "-k", "config/default"); err != nil {
		return rep, err
	}
	say("kubectl apply --server-side -k config/default: CRDs, admission policies, RBAC, the manager Deployment")
	if err := poll(ctx, 3*time.Minute, func() bool {
		d, err := cs.AppsV1().Deployments(operatorNamespace).Get(ctx, "jobtoken-controller-manager", metav1.GetOptions{})
		return err == nil && d.Status.AvailableReplicas >= 2 && d.Status.UpdatedReplicas >= 2
	}); err != nil {
		return rep, fmt.Errorf("the manager Deployment did not become available: %w\n%s", err, podDiagnosis(ctx, cs, operatorNamespace))
	}
	leader, err := waitLeader(ctx, cs, "", time.Minute)
	if err != nil {
		return rep, err
	}
	rep.ManagerReady = time.Since(mstart)
	pods, _ := cs.CoreV1().Pods(operatorNamespace).List(ctx, metav1.ListOptions{LabelSelector: "control-plane=controller-manager"})
	for _, p := range pods.Items {
		img := p.Spec.Containers[0].Image
		if len(p.Status.ContainerStatuses) > 0 {
			id := p.Status.ContainerStatuses[0].ImageID
			img += " (" + id[:min(len(id), 19)] + ")"
		}
		rep.ManagerPods = append(rep.ManagerPods, fmt.Sprintf("%s: %s, serviceAccount %s", p.Name, img, p.Spec.ServiceAccountName))
	}
	say("manager Deployment available in %s: 2 replicas, leader %s", rep.ManagerReady.Round(100*time.Millisecond), leader)
	// The managers use their in-cluster configuration: the kubernetes Service's cluster
	// IP, which only kube-proxy's rules lead to the API server.
	if svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{}); err == nil {
		rep.APIService = fmt.Sprintf("Service kubernetes %s:443 -> %s", svc.Spec.ClusterIP, strings.TrimPrefix(cl.APIServerURL, "https://"))
	}

	if err := setup(ctx, c, fast.url, slow.url); err != nil {
		return rep, err
	}
	notReady := ""
	if err := poll(ctx, time.Minute, func() bool {
		notReady = ""
		for _, n := range []string{"dev", "dev-slow"} {
			ci := &jobtokenv1alpha1.ClusterTokenIssuer{}
			if err := c.Get(ctx, client.ObjectKey{Name: n}, ci); err != nil {
				notReady += fmt.Sprintf("\n%s: %v", n, err)
			} else if cond := meta.FindStatusCondition(ci.Status.Conditions, jobtokenv1alpha1.ConditionReady); cond == nil || cond.Status != metav1.ConditionTrue {
				notReady += fmt.Sprintf("\n%s: %v", n, cond)
			}
		}
		return notReady == ""
	}); err != nil {
		return rep, fmt.Errorf("the ClusterTokenIssuers did not become Ready: %w%s", err, notReady)
	}

	perWorker := int64(o.Rate * o.Duration.Seconds())
	offRate := 2.0
	offPerWorker := int64(offRate * o.Duration.Seconds())
	runCtx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	watchers := map[string]*secretWatcher{}
	var wg sync.WaitGroup
	for _, n := range []string{mainJob, offJob, failingJob} {
		w := &secretWatcher{}
		watchers[n] = w
		wg.Add(1)
		go func() { defer wg.Done(); w.run(runCtx, cs, jobNamespace, n+"-token") }()
	}
	defer wg.Wait()
	defer cancelWatch()

	jobs := []*jobtokenv1alpha1.ImportJob{
		importJob(mainJob, "dev", o.WorkerImage, int32(o.Workers), 0, //nolint:gosec // at most maxWorkers (Defaults)
			o.Budget, true,
			workerArgs(fast.url+"/api/records", perWorker, o.Rate)),
		importJob(offJob, "dev-slow", o.WorkerImage, int32(o.OffWorkers), 0, //nolint:gosec // at most maxWorkers (Defaults)
			o.OffBudget, false,
			workerArgs(slow.url+"/api/records", offPerWorker, offRate)),
		importJob(failingJob, "dev", o.WorkerImage, 1, 1, o.Budget, true,
			workerArgs(fast.url+"/api/no-such-resource", 1, 1)),
	}
	jobs[1].Spec.Rotation.Jitter = "0"
	for _, j := range jobs {
		if err := c.Create(ctx, j); err != nil {
			return rep, fmt.Errorf("create ImportJob %s: %w", j.Name, err)
		}
	}
	say("ImportJobs created in %s: %s (%d workers, %.0f records/s each, %d records each, %s tokens, budget %s, nudging on), %s (%d workers, %s tokens, budget %s, nudging off), %s (a worker that exits 1, backoffLimit 1)",
		jobNamespace, mainJob, o.Workers, o.Rate, perWorker, o.AccessTTL, o.Budget, offJob, o.OffWorkers, o.OffAccessTTL, o.OffBudget, failingJob)

	// Wait for the main job's workers to run.
	if err := poll(ctx, 3*time.Minute, func() bool {
		return runningPods(ctx, cs, mainJob) >= o.Workers
	}); err != nil {
		return rep, fmt.Errorf("the workers of %s did not start: %w\n%s", mainJob, err, podDiagnosis(ctx, cs, jobNamespace))
	}
	workersStart := time.Now()
	say("%d worker pods of %s running (real containers of %s)", o.Workers, mainJob, o.WorkerImage)

	failoverAt := time.After(o.FailoverAt)
	tick := time.NewTicker(20 * time.Second)
	defer tick.Stop()
	ended := map[string]time.Time{}
	deadline := time.After(o.Duration + 5*time.Minute)
	for len(ended) < 3 {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-deadline:
			return rep, fmt.Errorf("the Jobs did not all end within %s of the workers' start\n%s", time.Since(workersStart).Round(time.Second), podDiagnosis(ctx, cs, jobNamespace))
		case <-failoverAt:
			f, err := failover(ctx, cs, kubectl, say)
			rep.Failover = f
			if err != nil {
				rep.Problems = append(rep.Problems, "failover: "+err.Error())
			}
		case <-tick.C:
			if err := cl.CheckAlive(); err != nil {
				return rep, err
			}
			fc, sc := fast.srv.Counters(), slow.srv.Counters()
			ij := &jobtokenv1alpha1.ImportJob{}
			_ = c.Get(ctx, client.ObjectKey{Namespace: jobNamespace, Name: mainJob}, ij)
			say("progress: %s accepted %d, 401s %d, rotations %d | %s accepted %d, 401s %d | refresh replays %d",
				mainJob, fc.ResourceAccepted, fc.Resource401Total, ij.Status.Rotations, offJob, sc.ResourceAccepted, sc.Resource401Total, fc.RefreshReuse+sc.RefreshReuse)
		case <-time.After(time.Second):
		}
		for _, n := range []string{mainJob, offJob, failingJob} {
			if _, done := ended[n]; done {
				continue
			}
			bj := &batchv1.Job{}
			if c.Get(ctx, client.ObjectKey{Namespace: jobNamespace, Name: n}, bj) != nil {
				continue
			}
			for _, cond := range bj.Status.Conditions {
				if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
					ended[n] = time.Now()
					say("Job %s: %s (set by the Job controller: %s)", n, cond.Type, cond.Reason)
				}
			}
		}
	}

	results := map[string]*JobResult{}
	for _, n := range []string{mainJob, offJob, failingJob} {
		r, err := finish(ctx, c, cs, operatorNamespace, n, watchers[n])
		if err != nil {
			return rep, err
		}
		results[n] = r
		say("ImportJob %s: phase %s, Revoked %v (%s after the Job's end, to the second), worker Secret gone %v, vault Secret gone %v",
			n, r.Phase, r.Revoked, r.EndToRevoked.Round(100*time.Millisecond), r.WorkerSecretGone, r.VaultSecretGone)
	}
	rep.Main, rep.Off, rep.Failing = results[mainJob], results[offJob], results[failingJob]
	rep.Main.Workers, rep.Off.Workers, rep.Failing.Workers = o.Workers, o.OffWorkers, 1
	rep.Main.RecordsExpected = perWorker * int64(o.Workers)
	rep.Off.RecordsExpected = offPerWorker * int64(o.OffWorkers)

	// Per-issuer figures: every token each issuer minted is asked about, not only the
	// ones seen in Secrets.
	fc, sc := fast.srv.Counters(), slow.srv.Counters()
	rep.RefreshReuse = fc.RefreshReuse + sc.RefreshReuse
	rep.Main.RecordsImported, rep.Main.Issuer401 = fc.ResourceAccepted, fc.Resource401Total
	rep.Off.RecordsImported, rep.Off.Issuer401 = sc.ResourceAccepted, sc.Resource401Total
	active := func(s *devissuer.Server) (n, total int) {
		for _, t := range s.Issued().All() {
			total++
			if s.Active(t) {
				n++
			}
		}
		return n, total
	}
	rep.Main.TokensActiveAfterEnd, rep.Main.TokensMinted = active(fast.srv)
	rep.Off.TokensActiveAfterEnd, rep.Off.TokensMinted = active(slow.srv)

	mainWrites := watchers[mainJob].snapshot()
	offWrites := watchers[offJob].snapshot()
	rep.PropagationOn = summarize(propagation(mainWrites, fast.rec, podIPs(ctx, cs, mainJob)))
	rep.PropagationOff = summarize(propagation(offWrites, slow.rec, podIPs(ctx, cs, offJob)))
	rep.Elapsed = time.Since(start)
	rep.Problems = append(rep.Problems, rep.check(o)...)
	return rep, nil
}

func workerArgs(url string, n int64, rate float64) []string {
	return []string{"-url", url, "-n", fmt.Sprint(n), "-rate", fmt.Sprint(rate), "-json", "-timeout", "5s"}
}

func setup(ctx context.Context, c client.Client, fastURL, slowURL string) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: jobNamespace}},
		testenv.ClientSecret(operatorNamespace, "import-jobs-client", clientSecret),
		testenv.UserSecret(jobNamespace, "import-system-user", systemUser, systemPass),
	}
	// The development issuer speaks plain http on the host's bridge address; the issuer
	// must allow that explicitly (insecureAllowPlainHTTP). Written as unstructured so that
	// an API without the field still takes the rest (the server prunes unknown fields).
	for name, u := range map[string]string{"dev": fastURL, "dev-slow": slowURL} {
		ci := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": jobtokenv1alpha1.GroupVersion.String(),
			"kind":       "ClusterTokenIssuer",
			"metadata":   map[string]any{"name": name},
			"spec": map[string]any{
				"oauth2": map[string]any{
					"issuerURL": u, "clientID": clientID, "clientAuth": string(jobtokenv1alpha1.ClientAuthSecretBasic),
					"clientSecretRef": map[string]any{"name": "import-jobs-client"},
				},
				"insecureAllowPlainHTTP": true,
				"allowed": map[string]any{
					"namespaces": []any{jobNamespace}, "grants": []any{string(jobtokenv1alpha1.GrantPassword)},
				},
			},
		}}
		objs = append(objs, ci)
	}
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

// importJob is an ImportJob whose workers run the example worker as a non-root user. The
// token file is mode 0400: fsGroup makes the kubelet give it to the workers' group.
func importJob(name, issuer, image string, workers int32, backoff int32, budget time.Duration, nudge bool, args []string) *jobtokenv1alpha1.ImportJob {
	job := testenv.ImportJob(jobNamespace, name, testenv.OnClusterTokenIssuer(issuer), "import-system-user")
	job.Spec.Rotation = jobtokenv1alpha1.RotationSpec{PropagationBudget: &metav1.Duration{Duration: budget}, NudgePods: ptr.To(nudge)}
	job.Spec.Template = batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
		Parallelism: ptr.To(workers), Completions: ptr.To(workers), BackoffLimit: ptr.To(backoff),
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](workerUser), FSGroup: ptr.To[int64](workerUser),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "importer", Image: image, Args: args,
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		}},
	}}
	return job
}

func jobPods(ctx context.Context, cs kubernetes.Interface, job string) []corev1.Pod {
	pods, err := cs.CoreV1().Pods(jobNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{"batch.kubernetes.io/job-name": job}).String(),
	})
	if err != nil {
		return nil
	}
	return pods.Items
}

func runningPods(ctx context.Context, cs kubernetes.Interface, job string) int {
	n := 0
	for _, p := range jobPods(ctx, cs, job) {
		if p.Status.Phase == corev1.PodRunning {
			n++
		}
	}
	return n
}

func podIPs(ctx context.Context, cs kubernetes.Interface, job string) []string {
	var ips []string
	for _, p := range jobPods(ctx, cs, job) {
		if p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
	}
	return ips
}

// podDiagnosis lists a namespace's pods with their phase and waiting reasons, and the
// namespace's warning events, for an error message.
func podDiagnosis(ctx context.Context, cs kubernetes.Interface, ns string) string {
	var b strings.Builder
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s: %s", p.Name, p.Status.Phase)
			for _, st := range p.Status.ContainerStatuses {
				if st.State.Waiting != nil {
					fmt.Fprintf(&b, " waiting %s: %s", st.State.Waiting.Reason, st.State.Waiting.Message)
				}
				if st.State.Terminated != nil {
					fmt.Fprintf(&b, " terminated %s (exit %d)", st.State.Terminated.Reason, st.State.Terminated.ExitCode)
				}
			}
			b.WriteString("\n")
		}
	}
	evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"})
	if err == nil {
		for _, e := range evs.Items {
			fmt.Fprintf(&b, "event %s/%s %s: %s\n", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	return b.String()
}

// leaderPod returns the pod holding the manager's lease ("" when none).
func leaderPod(ctx context.Context, cs kubernetes.Interface) (string, *coordinationv1.Lease) {
	return leaseHolder(ctx, cs, operatorNamespace)
}

// leaseHolder returns the pod holding the manager's lease in the operator namespace ns.
func leaseHolder(ctx context.Context, cs kubernetes.Interface, ns string) (string, *coordinationv1.Lease) {
	l, err := cs.CoordinationV1().Leases(ns).Get(ctx, manager.LeaderElectionID, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return "", nil
	}
	id, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	return id, l
}

// waitLeader waits until a pod other than not holds the lease.
func waitLeader(ctx context.Context, cs kubernetes.Interface, not string, timeout time.Duration) (string, error) {
	var got string
	err := poll(ctx, timeout, func() bool {
		got, _ = leaderPod(ctx, cs)
		return got != "" && got != not
	})
	if err != nil {
		return "", fmt.Errorf("no manager pod other than %q took the lease: %w", not, err)
	}
	return got, nil
}

func failover(ctx context.Context, cs kubernetes.Interface, kubectl func(...string) (string, error), say func(string, ...any)) (Failover, error) {
	var f Failover
	leader, _ := leaderPod(ctx, cs)
	if leader == "" {
		return f, errors.New("no lease holder to delete")
	}
	f.Deleted = leader
	t0 := time.Now()
	if _, err := kubectl("-n", operatorNamespace, "delete", "pod", leader, "--force", "--grace-period=0"); err != nil {
		return f, err
	}
	say("failover: deleted the leading manager pod %s with --force --grace-period=0", leader)
	nl, err := waitLeader(ctx, cs, leader, 2*time.Minute)
	if err != nil {
		return f, err
	}
	f.NewLeader, f.Takeover, f.Done = nl, time.Since(t0), true
	say("failover: %s holds the lease %s after the deletion", nl, f.Takeover.Round(100*time.Millisecond))
	return f, nil
}

// finish waits for the ImportJob to record its end, then collects its figures; opNS is
// the operator namespace, where the job's vault Secret is.
func finish(ctx context.Context, c client.Client, cs kubernetes.Interface, opNS, name string, w *secretWatcher) (*JobResult, error) {
	r := &JobResult{Name: name}
	ij := &jobtokenv1alpha1.ImportJob{}
	if err := poll(ctx, 2*time.Minute, func() bool {
		if c.Get(ctx, client.ObjectKey{Namespace: jobNamespace, Name: name}, ij) != nil {
			return false
		}
		return meta.FindStatusCondition(ij.Status.Conditions, jobtokenv1alpha1.ConditionRevoked) != nil &&
			(ij.Status.Phase == jobtokenv1alpha1.PhaseSucceeded || ij.Status.Phase == jobtokenv1alpha1.PhaseFailed)
	}); err != nil {
		return nil, fmt.Errorf("ImportJob %s did not record its end and revocation: %w (phase %q)", name, err, ij.Status.Phase)
	}
	r.Phase, r.Rotations = ij.Status.Phase, ij.Status.Rotations
	r.Revoked = meta.IsStatusConditionTrue(ij.Status.Conditions, jobtokenv1alpha1.ConditionRevoked)
	bj := &batchv1.Job{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: jobNamespace, Name: name}, bj); err == nil {
		for _, cond := range bj.Status.Conditions {
			if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
				r.JobCondition = string(cond.Type)
				// Both times come from the API objects, to the second.
				if rc := meta.FindStatusCondition(ij.Status.Conditions, jobtokenv1alpha1.ConditionRevoked); rc != nil {
					r.EndToRevoked = max(0, rc.LastTransitionTime.Sub(cond.LastTransitionTime.Time))
				}
			}
		}
	}
	_ = poll(ctx, 30*time.Second, func() bool {
		_, err := cs.CoreV1().Secrets(jobNamespace).Get(ctx, name+"-token", metav1.GetOptions{})
		r.WorkerSecretGone = apierrors.IsNotFound(err)
		vault, err := cs.CoreV1().Secrets(opNS).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{
			jobtokenv1alpha1.LabelImportJobUID: string(ij.UID),
		}).String()})
		r.VaultSecretGone = err == nil && len(vault.Items) == 0
		return r.WorkerSecretGone && r.VaultSecretGone
	})
	writes := w.snapshot()
	r.Writes = len(writes)
	for _, p := range jobPods(ctx, cs, name) {
		b, err := cs.CoreV1().Pods(jobNamespace).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		line := strings.TrimSpace(string(b))
		if err != nil {
			line = "logs: " + err.Error()
		} else if i := strings.LastIndex(line, "\n"); i >= 0 {
			line = line[i+1:]
		}
		var sum map[string]any
		if json.Unmarshal([]byte(line), &sum) == nil {
			line = fmt.Sprintf("calls %v, 2xx %v, 401 %v, other %v, errors %v, retried after 401 %v",
				sum["calls"], sum["ok2xx"], sum["unauthorized401"], sum["otherStatus"], sum["errors"], sum["retriedAfter401"])
		}
		r.WorkerSummaries = append(r.WorkerSummaries, p.Name+": "+line)
	}
	return r, nil
}

// poll waits for cond with the shared harness's bounded loop.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) error {
	return testenv.Poll(ctx, timeout, 250*time.Millisecond, cond)
}
