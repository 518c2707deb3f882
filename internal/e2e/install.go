package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/chartgen"
	"github.com/jobtoken/jobtoken/internal/scheme"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

// The install methods RunInstalls knows.
const (
	// InstallHelm applies `helm template` of charts/jobtoken, in a namespace of its own.
	InstallHelm = "helm"
	// InstallRelease applies dist/install.yaml as hack/release.sh (make release) writes it.
	InstallRelease = "release"
)

const (
	defaultChart       = "charts/jobtoken"
	helmNamespace      = "jobtoken-helm"
	managerDeployment  = "jobtoken-controller-manager"
	managerSelector    = "control-plane=controller-manager"
	installIssuer      = "dev-install"
	installWorkerRate  = 2.0
	installedRoleBinds = "jobtoken-manager-rolebinding"
)

// InstallPhase is one install method's outcome on the real node.
type InstallPhase struct {
	Method string
	// Manifest is the file applied; Source how it was made.
	Manifest, Source string
	// Namespace is the operator namespace the manifest installs into.
	Namespace string
	// Kinds counts the manifest's objects by kind.
	Kinds map[string]int
	// Image and Replicas are the manager Deployment's, as rendered.
	Image    string
	Replicas int32
	// Ready is the time from the apply to every replica Ready and a lease holder.
	Ready  time.Duration
	Pods   []string
	Leader string
	// Versions are the versions the manager pods logged at start.
	Versions []string
	Job      *JobResult
	// Propagation is the rotated tokens' way to the worker (Secret write to first use).
	Propagation  dist
	RefreshReuse int64
	// Uninstalled is the time `kubectl delete -f` of the manifest took until the operator
	// namespace, the CRDs and the manager's ClusterRoleBinding were gone.
	Uninstalled time.Duration
}

// InstallReport is what RunInstalls measured.
type InstallReport struct {
	ClusterStart time.Duration
	Phases       []*InstallPhase
	Elapsed      time.Duration
	Problems     []string
}

// RunInstalls starts the real node and, for each method in turn, renders the operator's
// manifests that way, applies them server-side with the manager image loaded on the node,
// waits for every manager replica to be Ready and one to lead, runs one ImportJob whose
// worker container imports records with the token (through at least one rotation) until
// the Job controller completes it, checks revocation, and uninstalls with `kubectl
// delete -f` of the same manifest before the next method.
func RunInstalls(ctx context.Context, o Options, methods []string) (rep *InstallReport, err error) {
	o.Defaults()
	for _, m := range methods {
		if m != InstallHelm && m != InstallRelease {
			return nil, fmt.Errorf("install method %q: want %s or %s", m, InstallHelm, InstallRelease)
		}
	}
	start := time.Now()
	rep = &InstallReport{}
	defer func() {
		// A phase that stopped early is a failure of the report too.
		if err != nil {
			rep.Problems = append(rep.Problems, err.Error())
		}
	}()
	say := func(format string, args ...any) {
		_, _ = fmt.Fprintf(o.Out, "[%6s] %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
	cl, stopCluster, err := startCluster(ctx, o, say)
	if err != nil {
		return nil, err
	}
	defer stopCluster()
	rep.ClusterStart = time.Since(start)
	c, err := client.New(cl.RestConfig, client.Options{Scheme: scheme.New()})
	if err != nil {
		return rep, err
	}
	kubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, o.Kubectl, append([]string{"--kubeconfig", cl.AdminKubeconfig}, args...)...)
		cmd.Dir = o.RepoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return string(out), nil
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: jobNamespace}}); err != nil {
		return rep, err
	}
	if err := c.Create(ctx, testenv.UserSecret(jobNamespace, "import-system-user", systemUser, systemPass)); err != nil {
		return rep, err
	}
	for _, m := range methods {
		ph := &InstallPhase{Method: m}
		rep.Phases = append(rep.Phases, ph)
		// A fresh issuer per phase: its counters and minted tokens are this phase's.
		iss, err := startIssuer(cl.HostIP.String(), o.AccessTTL)
		if err != nil {
			return rep, err
		}
		err = installPhase(ctx, o, ph, c, cl.Clientset, kubectl, iss, say)
		_ = iss.http.Close()
		if err != nil {
			return rep, fmt.Errorf("%s: %w", m, err)
		}
		rep.Problems = append(rep.Problems, ph.check(o)...)
		if err := cl.CheckAlive(); err != nil {
			return rep, err
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// renderManifest writes the method's manifest into the work directory.
func renderManifest(ctx context.Context, o Options, method string) (path, source string, err error) {
	repo, tag, ok := strings.Cut(o.ManagerImage, ":")
	if !ok || strings.Contains(tag, "/") {
		return "", "", fmt.Errorf("--manager-image %q: want repository:tag", o.ManagerImage)
	}
	run := func(env []string, name string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = o.RepoRoot
		cmd.Env = append(os.Environ(), env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
	switch method {
	case InstallHelm:
		if o.Helm == "" {
			return "", "", errors.New("no helm binary (--helm; make helm builds it)")
		}
		// A packaged chart (make release) is rendered with its own default image, which
		// must then be the one on the node; the chart in the tree is told the image.
		args := []string{"template", "jobtoken", o.Chart, "--namespace", helmNamespace, "--set", "createNamespace=true"}
		if o.Chart == defaultChart {
			args = append(args, "--set-string", "image.repository="+repo, "--set-string", "image.tag="+tag)
		}
		out, err := run(nil, o.Helm, args...)
		if err != nil {
			return "", "", err
		}
		path = filepath.Join(o.WorkDir, "helm-template.yaml")
		return path, "helm " + strings.Join(args, " "), os.WriteFile(path, out, 0o600)
	case InstallRelease:
		if o.ReleaseManifest != "" {
			return o.ReleaseManifest, "given (--release-manifest)", nil
		}
		dist := filepath.Join(o.WorkDir, "release")
		env := []string{"VERSION=" + tag, "IMAGE_REPO=" + repo, "DIST=" + dist, "KUBECTL=" + o.Kubectl}
		if _, err := run(env, filepath.Join("hack", "release.sh"), "manifests"); err != nil {
			return "", "", err
		}
		return filepath.Join(dist, "install.yaml"), fmt.Sprintf("VERSION=%s IMAGE_REPO=%s hack/release.sh manifests (as make release)", tag, repo), nil
	}
	return "", "", fmt.Errorf("install method %q", method)
}

func installPhase(ctx context.Context, o Options, ph *InstallPhase, c client.Client, cs kubernetes.Interface,
	kubectl func(...string) (string, error), iss *issuerSide, say func(string, ...any)) error {
	manifest, source, err := renderManifest(ctx, o, ph.Method)
	if err != nil {
		return err
	}
	ph.Manifest, ph.Source = manifest, source
	data, err := os.ReadFile(manifest)
	if err != nil {
		return err
	}
	objs, err := chartgen.Decode(data)
	if err != nil {
		return fmt.Errorf("%s: %w", manifest, err)
	}
	ph.Kinds = map[string]int{}
	for _, obj := range objs {
		ph.Kinds[obj.GetKind()]++
		if obj.GetKind() == "Deployment" && obj.GetName() == managerDeployment {
			ph.Namespace = obj.GetNamespace()
			containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
			if len(containers) > 0 {
				ph.Image, _, _ = unstructured.NestedString(containers[0].(map[string]any), "image")
			}
			// Decoded from YAML through JSON: a number is a float64 or an int64.
			switch r, _, _ := unstructured.NestedFieldNoCopy(obj.Object, "spec", "replicas"); r := r.(type) {
			case int64:
				ph.Replicas = int32(r) //nolint:gosec // a rendered replica count
			case float64:
				ph.Replicas = int32(r)
			}
		}
	}
	if ph.Namespace == "" {
		return fmt.Errorf("%s holds no Deployment %s", manifest, managerDeployment)
	}
	if ph.Replicas < 1 {
		return fmt.Errorf("%s: the Deployment %s has no replica count", manifest, managerDeployment)
	}
	if ph.Image != o.ManagerImage {
		return fmt.Errorf("%s runs the manager image %q, but the node has %q (make image; --manager-image)", manifest, ph.Image, o.ManagerImage)
	}
	say("%s: %s -> %s (%d objects: %s), operator namespace %s", ph.Method, source, manifest, len(objs), kindList(ph.Kinds), ph.Namespace)

	t0 := time.Now()
	if _, err := kubectl("apply", "--server-side", "-f", manifest); err != nil {
		return err
	}
	if err := poll(ctx, 3*time.Minute, func() bool {
		d, err := cs.AppsV1().Deployments(ph.Namespace).Get(ctx, managerDeployment, metav1.GetOptions{})
		if err != nil || d.Status.AvailableReplicas < ph.Replicas || d.Status.UpdatedReplicas < ph.Replicas {
			return false
		}
		pods, err := cs.CoreV1().Pods(ph.Namespace).List(ctx, metav1.ListOptions{LabelSelector: managerSelector})
		if err != nil || len(pods.Items) != int(ph.Replicas) {
			return false
		}
		for _, p := range pods.Items {
			if !podReady(&p) {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("the manager pods did not all become Ready: %w\n%s", err, podDiagnosis(ctx, cs, ph.Namespace))
	}
	if err := poll(ctx, time.Minute, func() bool {
		ph.Leader, _ = leaseHolder(ctx, cs, ph.Namespace)
		return ph.Leader != ""
	}); err != nil {
		return fmt.Errorf("no manager pod took the lease in %s: %w", ph.Namespace, err)
	}
	ph.Ready = time.Since(t0)
	pods, err := cs.CoreV1().Pods(ph.Namespace).List(ctx, metav1.ListOptions{LabelSelector: managerSelector})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		st := p.Status.ContainerStatuses[0]
		v := managerVersion(ctx, cs, ph.Namespace, p.Name)
		ph.Versions = append(ph.Versions, v)
		ph.Pods = append(ph.Pods, fmt.Sprintf("%s: Ready %v, image %s (%s), version %s, serviceAccount %s, restarts %d",
			p.Name, podReady(&p), st.Image, st.ImageID[:min(len(st.ImageID), 19)], v, p.Spec.ServiceAccountName, st.RestartCount))
	}
	say("%s: %d manager pods Ready in %s, leader %s", ph.Method, len(pods.Items), ph.Ready.Round(100*time.Millisecond), ph.Leader)

	// The issuer's client secret lives in the operator namespace the manifest made.
	if err := c.Create(ctx, testenv.ClientSecret(ph.Namespace, "import-jobs-client", clientSecret)); err != nil {
		return err
	}
	ci := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": jobtokenv1alpha1.GroupVersion.String(),
		"kind":       "ClusterTokenIssuer",
		"metadata":   map[string]any{"name": installIssuer},
		"spec": map[string]any{
			"oauth2": map[string]any{
				"issuerURL": iss.url, "clientID": clientID, "clientAuth": string(jobtokenv1alpha1.ClientAuthSecretBasic),
				"clientSecretRef": map[string]any{"name": "import-jobs-client"},
			},
			"insecureAllowPlainHTTP": true,
			"allowed":                map[string]any{"namespaces": []any{jobNamespace}, "grants": []any{string(jobtokenv1alpha1.GrantPassword)}},
		},
	}}
	if err := c.Create(ctx, ci); err != nil {
		return fmt.Errorf("create ClusterTokenIssuer: %w", err)
	}
	if err := poll(ctx, time.Minute, func() bool {
		got := &jobtokenv1alpha1.ClusterTokenIssuer{}
		return c.Get(ctx, client.ObjectKey{Name: installIssuer}, got) == nil &&
			meta.IsStatusConditionTrue(got.Status.Conditions, jobtokenv1alpha1.ConditionReady)
	}); err != nil {
		return fmt.Errorf("the ClusterTokenIssuer did not become Ready: %w", err)
	}

	name := "via-" + ph.Method
	perWorker := int64(installWorkerRate * o.InstallDuration.Seconds())
	w := &secretWatcher{}
	watchCtx, cancelWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.run(watchCtx, cs, jobNamespace, name+"-token") }()
	defer wg.Wait()
	defer cancelWatch()
	ij := importJob(name, installIssuer, o.WorkerImage, 1, 0, o.Budget, true,
		workerArgs(iss.url+"/api/records", perWorker, installWorkerRate))
	if err := c.Create(ctx, ij); err != nil {
		return fmt.Errorf("create ImportJob %s: %w", name, err)
	}
	say("%s: ImportJob %s/%s created (1 worker, %d records at %.0f/s, %s tokens)", ph.Method, jobNamespace, name, perWorker, installWorkerRate, o.AccessTTL)
	if err := poll(ctx, o.InstallDuration+4*time.Minute, func() bool {
		bj := &batchv1.Job{}
		if c.Get(ctx, client.ObjectKey{Namespace: jobNamespace, Name: name}, bj) != nil {
			return false
		}
		for _, cond := range bj.Status.Conditions {
			if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}); err != nil {
		return fmt.Errorf("the Job %s did not end: %w\n%s", name, err, podDiagnosis(ctx, cs, jobNamespace))
	}
	ph.Job, err = finish(ctx, c, cs, ph.Namespace, name, w)
	if err != nil {
		return err
	}
	ph.Job.Workers, ph.Job.RecordsExpected = 1, perWorker
	cnt := iss.srv.Counters()
	ph.Job.RecordsImported, ph.Job.Issuer401, ph.RefreshReuse = cnt.ResourceAccepted, cnt.Resource401Total, cnt.RefreshReuse
	for _, t := range iss.srv.Issued().All() {
		ph.Job.TokensMinted++
		if iss.srv.Active(t) {
			ph.Job.TokensActiveAfterEnd++
		}
	}
	ph.Propagation = summarize(propagation(w.snapshot(), iss.rec, podIPs(ctx, cs, name)))
	say("%s: ImportJob %s: Job %s, phase %s, %d of %d records, %d rotations, HTTP 401 %d, tokens active after the end %d of %d",
		ph.Method, name, ph.Job.JobCondition, ph.Job.Phase, ph.Job.RecordsImported, ph.Job.RecordsExpected, ph.Job.Rotations,
		ph.Job.Issuer401, ph.Job.TokensActiveAfterEnd, ph.Job.TokensMinted)

	// Uninstall: the ImportJob first, while its manager can still release its finalizer.
	if err := c.Delete(ctx, ij, client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
		return err
	}
	if err := poll(ctx, 2*time.Minute, func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(ij), &jobtokenv1alpha1.ImportJob{}))
	}); err != nil {
		return fmt.Errorf("ImportJob %s was not deleted: %w", name, err)
	}
	t0 = time.Now()
	if _, err := kubectl("delete", "-f", manifest, "--ignore-not-found", "--wait=true", "--timeout=3m"); err != nil {
		return err
	}
	left := ""
	if err := poll(ctx, 3*time.Minute, func() bool {
		left = leftovers(ctx, c, cs, ph.Namespace)
		return left == ""
	}); err != nil {
		return fmt.Errorf("uninstall left %s: %w", left, err)
	}
	ph.Uninstalled = time.Since(t0)
	say("%s: kubectl delete -f %s: operator namespace, CRDs, ClusterRoleBinding and manager pods gone after %s",
		ph.Method, filepath.Base(manifest), ph.Uninstalled.Round(100*time.Millisecond))
	return nil
}

var startVersion = regexp.MustCompile(`"msg":"Starting manager".*?"version":"([^"]*)"`)

// managerVersion returns the version a manager pod logged at start ("" when not found).
func managerVersion(ctx context.Context, cs kubernetes.Interface, ns, pod string) string {
	b, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "manager"}).DoRaw(ctx)
	if err != nil {
		return ""
	}
	if m := startVersion.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// leftovers names what an uninstall left of the operator ("" when nothing).
func leftovers(ctx context.Context, c client.Client, cs kubernetes.Interface, ns string) string {
	var left []string
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		left = append(left, "Namespace "+ns)
	}
	for _, crd := range []string{"importjobs", "tokenissuers", "clustertokenissuers"} {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("apiextensions.k8s.io/v1")
		u.SetKind("CustomResourceDefinition")
		if err := c.Get(ctx, client.ObjectKey{Name: crd + "." + jobtokenv1alpha1.GroupVersion.Group}, u); !apierrors.IsNotFound(err) {
			left = append(left, "CRD "+crd)
		}
	}
	if err := c.Get(ctx, client.ObjectKey{Name: installedRoleBinds}, &rbacv1.ClusterRoleBinding{}); !apierrors.IsNotFound(err) {
		left = append(left, "ClusterRoleBinding "+installedRoleBinds)
	}
	if pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: managerSelector}); err != nil || len(pods.Items) > 0 {
		left = append(left, "manager pods")
	}
	return strings.Join(left, ", ")
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func kindList(kinds map[string]int) string {
	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(ks)
	return strings.Join(ks, ", ")
}

// check lists every way the phase fell short.
func (ph *InstallPhase) check(o Options) []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, ph.Method+": "+fmt.Sprintf(format, args...)) }
	if ph.Replicas < 1 || len(ph.Pods) != int(ph.Replicas) {
		bad("%d manager pods Ready of %d replicas", len(ph.Pods), ph.Replicas)
	}
	// The image's tag is the version its binary was stamped with (make image: dev).
	if _, tag, _ := strings.Cut(o.ManagerImage, ":"); slices.ContainsFunc(ph.Versions, func(v string) bool { return v != tag }) {
		bad("the manager pods logged the versions %v, want %s (the image's tag)", ph.Versions, tag)
	}
	j := ph.Job
	if j == nil {
		bad("no ImportJob ran")
		return p
	}
	if j.RecordsImported != j.RecordsExpected || j.RecordsExpected == 0 {
		bad("%d of %d records imported", j.RecordsImported, j.RecordsExpected)
	}
	if j.Issuer401 != 0 {
		bad("%d HTTP 401s at the issuer", j.Issuer401)
	}
	if j.JobCondition != "Complete" || j.Phase != jobtokenv1alpha1.PhaseSucceeded {
		bad("Job %q, ImportJob %q (want Complete, Succeeded)", j.JobCondition, j.Phase)
	}
	if j.Rotations < 1 || ph.Propagation.N == 0 {
		bad("%d rotations, %d propagation samples: no rotated token was seen reaching the worker", j.Rotations, ph.Propagation.N)
	} else if ph.Propagation.Max > o.Budget {
		bad("a rotated token took %s to reach the worker, over the budget %s", ph.Propagation.Max.Round(10*time.Millisecond), o.Budget)
	}
	if !j.Revoked || !j.WorkerSecretGone || !j.VaultSecretGone || j.TokensActiveAfterEnd != 0 || j.TokensMinted == 0 {
		bad("Revoked %v, worker Secret gone %v, vault Secret gone %v, tokens active after the end %d of %d",
			j.Revoked, j.WorkerSecretGone, j.VaultSecretGone, j.TokensActiveAfterEnd, j.TokensMinted)
	}
	if ph.RefreshReuse != 0 {
		bad("%d refresh-token replays at the issuer", ph.RefreshReuse)
	}
	return p
}

// Print writes the install check's table.
func (r *InstallReport) Print(w io.Writer, o Options) {
	o.Defaults()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(what, value, source string) { _, _ = fmt.Fprintf(tw, "%s\t%s\t%s\n", what, value, source) }
	_, _ = fmt.Fprintln(tw, "\nWHAT\tVALUE\tWHERE IT COMES FROM")
	row("cluster start", r.ClusterStart.Round(100*time.Millisecond).String(), "runner: processes started to node Ready")
	for _, ph := range r.Phases {
		m := ph.Method
		row(m+": manifest", ph.Source, ph.Manifest)
		row(m+": objects", kindList(ph.Kinds), "the manifest")
		row(m+": manager Ready", fmt.Sprintf("%s: %d of %d replicas Ready, leader %s", ph.Ready.Round(100*time.Millisecond), len(ph.Pods), ph.Replicas, ph.Leader),
			"kubectl apply --server-side -f to every pod Ready (readiness probe) and a lease holder in "+ph.Namespace)
		for _, p := range ph.Pods {
			row("  manager pod", p, "pod status (image ID from containerd)")
		}
		if j := ph.Job; j != nil {
			row(m+": records", fmt.Sprintf("%d of %d imported, HTTP 401 %d", j.RecordsImported, j.RecordsExpected, j.Issuer401), "issuer: answers at its protected resource")
			row(m+": rotations", fmt.Sprintf("%d (%d Secret writes seen)", j.Rotations, j.Writes), "ImportJob status; watch on the worker Secret")
			row(m+": propagation", ph.Propagation.String(), "Secret write to the worker's first call with that token")
			for _, s := range j.WorkerSummaries {
				row("  worker", s, "container log (example-worker -json)")
			}
			row(m+": end", fmt.Sprintf("Job %s, ImportJob %s, Revoked %v; worker Secret gone %v, vault Secret gone %v", j.JobCondition, j.Phase, j.Revoked, j.WorkerSecretGone, j.VaultSecretGone), "Job controller; ImportJob status; API server")
			row(m+": tokens active after the end", fmt.Sprintf("%d of %d; refresh replays %d", j.TokensActiveAfterEnd, j.TokensMinted, ph.RefreshReuse), "issuer introspection of every token it minted")
		}
		row(m+": uninstall", ph.Uninstalled.Round(100*time.Millisecond).String(), "kubectl delete -f to namespace, CRDs, ClusterRoleBinding and pods gone")
	}
	row("elapsed", r.Elapsed.Round(time.Second).String(), "")
	_ = tw.Flush()
	if len(r.Problems) == 0 {
		_, _ = fmt.Fprintln(w, "\nPASS")
		return
	}
	_, _ = fmt.Fprintln(w, "\nFAIL:\n  "+strings.Join(r.Problems, "\n  "))
}
