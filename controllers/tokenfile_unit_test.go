package controllers

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// TestTokenFileReadableByNonRoot: the fsGroup contract. A template whose container
// runs as a non-root user without the pod's fsGroup cannot read the token files (root,
// 0400); the job still runs (a sidecar may never read them) but carries
// TokenFileUnreadable naming the container and the field, with a Warning event. With
// fsGroup, or with the user left to the image or root, there is nothing to say.
func TestTokenFileReadableByNonRoot(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  *corev1.PodSecurityContext
		sc   *corev1.SecurityContext
		want string // in the message; empty: no condition
	}{
		{"pod user without fsGroup", &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)}, nil, `container "importer" runs as user 1000`},
		{"container user without fsGroup", nil, &corev1.SecurityContext{RunAsUser: ptr.To[int64](65532)}, "user 65532"},
		{"runAsNonRoot without fsGroup", &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}, nil, "non-root user"},
		{"fsGroup", &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), FSGroup: ptr.To[int64](1000)}, nil, ""},
		{"root container in a non-root pod", &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)}, &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)}, ""},
		{"user left to the image", nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, interceptor.Funcs{})
			rec := events.NewFakeRecorder(100)
			u.r.Recorder = rec
			j := u.job()
			j.Spec.Template.Spec.Template.Spec.SecurityContext = tc.pod
			j.Spec.Template.Spec.Template.Spec.Containers[0].SecurityContext = tc.sc
			if err := u.r.Update(context.Background(), j); err != nil {
				t.Fatal(err)
			}
			u.start()
			c := meta.FindStatusCondition(u.job().Status.Conditions, jobtokenv1alpha1.ConditionTokenFileUnreadable)
			if tc.want == "" {
				if c != nil {
					t.Fatalf("condition on a readable template: %s", c.Message)
				}
				return
			}
			if c == nil || c.Status != "True" || c.Reason != jobtokenv1alpha1.ReasonNoFSGroup ||
				!strings.Contains(c.Message, tc.want) || !strings.Contains(c.Message, "securityContext.fsGroup") {
				t.Fatalf("condition %+v, want it to say %q and name the field", c, tc.want)
			}
			warned := false
			for len(rec.Events) > 0 {
				if e := <-rec.Events; strings.Contains(e, jobtokenv1alpha1.ReasonNoFSGroup) {
					warned = true
				}
			}
			if !warned {
				t.Error("no Warning event")
			}
			// Setting fsGroup clears it.
			j = u.job()
			if j.Spec.Template.Spec.Template.Spec.SecurityContext == nil {
				j.Spec.Template.Spec.Template.Spec.SecurityContext = &corev1.PodSecurityContext{}
			}
			j.Spec.Template.Spec.Template.Spec.SecurityContext.FSGroup = ptr.To[int64](2000)
			if err := u.r.Update(context.Background(), j); err != nil {
				t.Fatal(err)
			}
			if _, err := u.reconcile(); err != nil {
				t.Fatal(err)
			}
			if c := meta.FindStatusCondition(u.job().Status.Conditions, jobtokenv1alpha1.ConditionTokenFileUnreadable); c != nil {
				t.Fatalf("the condition stays after fsGroup was set: %s", c.Message)
			}
		})
	}
}
