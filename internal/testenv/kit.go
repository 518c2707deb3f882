package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The pieces every harness needs (the controllers suite, optest, internal/harness for the
// bench and the chaos run, the demo): bounded polling, playing the job controller that
// envtest lacks, and logging in at the development issuer.

// Poll calls cond every interval until it is true, the timeout passes or ctx ends.
func Poll(ctx context.Context, timeout, interval time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
	return nil
}

// Sleep waits for d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Eventually polls cond every 100 ms until it holds, failing the test after timeout with
// what it waited for.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	if err := Poll(context.Background(), timeout, 100*time.Millisecond, cond); err != nil {
		tb.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// MarkJob sets the batch Job's terminal condition, JobComplete or JobFailed, as the job
// controller would.
func MarkJob(ctx context.Context, c client.Client, key client.ObjectKey, cond batchv1.JobConditionType) error {
	j := &batchv1.Job{}
	if err := c.Get(ctx, key, j); err != nil {
		return err
	}
	now := metav1.Now()
	if j.Status.StartTime == nil {
		j.Status.StartTime = &now
	}
	condition := func(t batchv1.JobConditionType, reason string) batchv1.JobCondition {
		return batchv1.JobCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now, Reason: reason}
	}
	switch cond {
	case batchv1.JobComplete:
		j.Status.Conditions = []batchv1.JobCondition{condition(batchv1.JobSuccessCriteriaMet, ""), condition(batchv1.JobComplete, "")}
		j.Status.CompletionTime = &now
		j.Status.Succeeded = 1
	case batchv1.JobFailed:
		j.Status.Conditions = []batchv1.JobCondition{condition(batchv1.JobFailureTarget, "BackoffLimitExceeded"), condition(batchv1.JobFailed, "BackoffLimitExceeded")}
		j.Status.Failed = 1
	default:
		return fmt.Errorf("testenv: MarkJob sets JobComplete or JobFailed, not %s", cond)
	}
	return c.Status().Update(ctx, j)
}

// WorkerPod returns a pod of the batch Job as the job controller would create it: the
// template's labels, annotations and spec, controlled by the Job.
func WorkerPod(bj *batchv1.Job, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: bj.Namespace, Name: name, Labels: bj.Spec.Template.Labels, Annotations: bj.Spec.Template.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(bj, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: *bj.Spec.Template.Spec.DeepCopy(),
	}
}

// TokenRequest posts form to the issuer's token endpoint (issuerURL + "/token") as the
// OAuth client and returns the answer's tokens; a refusal returns empty tokens and the
// HTTP status in the error.
func TokenRequest(ctx context.Context, issuerURL, clientID, clientSecret string, form url.Values) (access, refresh string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, issuerURL+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("token request refused (HTTP %d)", resp.StatusCode)
	}
	return body.AccessToken, body.RefreshToken, nil
}
