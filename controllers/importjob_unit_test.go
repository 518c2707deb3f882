package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
	issuerfake "github.com/jobtoken/jobtoken/internal/issuer/fake"
	"github.com/jobtoken/jobtoken/internal/scheme"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"github.com/jobtoken/jobtoken/internal/tokenchain"
)

// The unit layer: the reconciler against controller-runtime's fake client, the fake
// issuer and a fake clock, for the crash-safety rules that are hard to time in envtest.

type unitEnv struct {
	t      *testing.T
	r      *ImportJobReconciler
	issuer *issuerfake.Client
	clock  *clocktesting.FakeClock
	key    client.ObjectKey
	mints  int
}

func newUnitEnv(t *testing.T, grant jobtokenv1alpha1.GrantType, funcs interceptor.Funcs) *unitEnv {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	u := &unitEnv{t: t, clock: clk, key: client.ObjectKey{Namespace: "ns", Name: "job"}}
	u.issuer = issuerfake.New().
		WithMint(func(context.Context, issuer.Grant) (*issuer.TokenSet, error) {
			u.mints++
			return u.tokens("minted"), nil
		}).
		WithRefresh(func(context.Context, string) (*issuer.TokenSet, error) { return u.tokens("refreshed"), nil })

	job := testenv.ImportJob("ns", "job", testenv.OnTokenIssuer("idp"), "user")
	job.UID, job.Generation = "uid-1", 1
	job.Spec.Credentials = jobtokenv1alpha1.CredentialsSpec{Grant: grant}
	job.Spec.Rotation = jobtokenv1alpha1.RotationSpec{Fraction: "0.5", Jitter: "0", PropagationBudget: &metav1.Duration{Duration: 10 * time.Second}}
	switch grant {
	case jobtokenv1alpha1.GrantPassword:
		job.Spec.Credentials.Password = &jobtokenv1alpha1.PasswordGrant{SecretRef: jobtokenv1alpha1.LocalSecretReference{Name: "user"}}
	case jobtokenv1alpha1.GrantRefreshToken:
		job.Spec.Credentials.RefreshToken = &jobtokenv1alpha1.RefreshTokenGrant{SecretRef: jobtokenv1alpha1.SecretKeySelector{Name: "handover"}}
	}
	ti := &jobtokenv1alpha1.TokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "idp", UID: "issuer-uid", Generation: 1},
		Spec:       jobtokenv1alpha1.TokenIssuerSpec{OAuth2: &jobtokenv1alpha1.OAuth2IssuerSpec{TokenURL: "http://127.0.0.1:1/token", ClientID: "c"}},
		Status: jobtokenv1alpha1.TokenIssuerStatus{Conditions: []metav1.Condition{{
			Type: jobtokenv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Succeeded", ObservedGeneration: 1, LastTransitionTime: metav1.Now(),
		}}},
	}
	secrets := []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "user"}, Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "handover"}, Data: map[string][]byte{"refresh_token": []byte("handed-over-refresh-token")}},
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).
		WithObjects(append(secrets, job, ti)...).
		WithStatusSubresource(&jobtokenv1alpha1.ImportJob{}, &jobtokenv1alpha1.TokenIssuer{}).
		WithInterceptorFuncs(funcs).
		Build()
	factory := func(context.Context, jobtokenv1alpha1.TokenIssuerSpec, string, SecretReader) (issuer.Client, error) {
		return u.issuer, nil
	}
	u.r = &ImportJobReconciler{
		Client: c, APIReader: c, Recorder: events.NewFakeRecorder(100), Clock: clk,
		VaultNamespace: "vault", IssuerClients: factory,
		RevocationBudget: time.Minute, MinRotationGap: time.Second, MaxRetryBackoff: time.Minute,
	}
	u.r.clients = newClientCache(factory, c, time.Hour)
	return u
}

func (u *unitEnv) tokens(prefix string) *issuer.TokenSet {
	now := u.clock.Now()
	return &issuer.TokenSet{
		AccessToken: prefix + "-access-" + now.Format("150405"), RefreshToken: prefix + "-refresh-" + now.Format("150405"),
		TokenType: "Bearer", IssuedAt: now, ExpiresAt: now.Add(time.Minute),
	}
}

func (u *unitEnv) reconcile() (ctrl.Result, error) {
	u.t.Helper()
	return u.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: u.key})
}

func (u *unitEnv) job() *jobtokenv1alpha1.ImportJob {
	u.t.Helper()
	j := &jobtokenv1alpha1.ImportJob{}
	if err := u.r.Get(context.Background(), u.key, j); err != nil {
		u.t.Fatal(err)
	}
	return j
}

func (u *unitEnv) chain() *storedChain {
	u.t.Helper()
	s := &corev1.Secret{}
	if err := u.r.Get(context.Background(), client.ObjectKey{Namespace: "vault", Name: "importjob-uid-1"}, s); err != nil {
		u.t.Fatal(err)
	}
	return decodeChain(s)
}

// start runs the reconciler until the first token is in place.
func (u *unitEnv) start() {
	u.t.Helper()
	for range 3 {
		if _, err := u.reconcile(); err != nil {
			u.t.Fatalf("reconcile: %v", err)
		}
	}
	if u.job().Status.Phase != jobtokenv1alpha1.PhaseRunning {
		u.t.Fatalf("not running: %+v", u.job().Status)
	}
}

func TestFirstReconcileSchedulesRotation(t *testing.T) {
	u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, interceptor.Funcs{})
	u.start()
	res, err := u.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	// 60 s token, fraction 0.5, budget 10 s: rotate 30 s after issue.
	if res.RequeueAfter != 30*time.Second {
		t.Errorf("RequeueAfter = %s, want 30s", res.RequeueAfter)
	}
	if got := u.job().Status.NextRotationTime.Time; !got.Equal(u.clock.Now().Add(30 * time.Second)) {
		t.Errorf("nextRotationTime = %s", got)
	}
	if u.issuer.Calls()[0] != "mint" || len(u.issuer.Calls()) != 1 {
		t.Errorf("issuer calls = %v, want one mint", u.issuer.Calls())
	}
}

func TestRotationPersistsChainBeforeWorkerSecret(t *testing.T) {
	var order []string
	funcs := interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if s, ok := obj.(*corev1.Secret); ok && s.Namespace == "vault" {
				if len(s.Data[tokenchain.KeyInFlight]) > 0 {
					order = append(order, "chain-marker")
				} else {
					order = append(order, "chain-tokens")
				}
			}
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if s, ok := obj.(*corev1.Secret); ok && s.Namespace == "ns" {
				order = append(order, "worker-secret")
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	}
	u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, funcs)
	u.start()
	order = nil
	u.issuer.WithRefresh(func(context.Context, string) (*issuer.TokenSet, error) {
		order = append(order, "issuer-refresh")
		return u.tokens("refreshed"), nil
	})
	u.clock.Step(31 * time.Second)
	if _, err := u.reconcile(); err != nil {
		t.Fatal(err)
	}
	want := []string{"chain-marker", "issuer-refresh", "chain-tokens", "worker-secret"}
	if len(order) != len(want) {
		t.Fatalf("order = %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order = %v, want %v", order, want)
		}
	}
	if u.job().Status.Rotations != 1 || u.chain().InFlight != "" {
		t.Errorf("rotation not recorded: rotations %d, marker %q", u.job().Status.Rotations, u.chain().InFlight)
	}
}

// A crash after the refresh succeeded but before its tokens were persisted leaves the
// marker; the next pass re-mints and never sends the spent refresh token again.
func TestLostPersistRemints(t *testing.T) {
	failNext := false
	funcs := interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if s, ok := obj.(*corev1.Secret); ok && s.Namespace == "vault" && failNext && len(s.Data[tokenchain.KeyInFlight]) == 0 {
				failNext = false
				return errors.New("connection lost")
			}
			return c.Update(ctx, obj, opts...)
		},
	}
	u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, funcs)
	u.start()
	spent := u.chain().RefreshToken
	var refreshed []string
	u.issuer.WithRefresh(func(_ context.Context, rt string) (*issuer.TokenSet, error) {
		refreshed = append(refreshed, rt)
		return u.tokens("refreshed"), nil
	})
	u.clock.Step(31 * time.Second)
	failNext = true
	if _, err := u.reconcile(); err == nil {
		t.Fatal("want the persist error")
	}
	if u.chain().InFlight == "" {
		t.Fatal("the marker was not left behind")
	}
	mintsBefore := u.mints
	if _, err := u.reconcile(); err != nil {
		t.Fatal(err)
	}
	if u.mints != mintsBefore+1 {
		t.Errorf("no re-mint after the lost persist")
	}
	for i, rt := range refreshed {
		if i > 0 && rt == spent {
			t.Errorf("the spent refresh token was sent again")
		}
	}
	if len(refreshed) != 1 {
		t.Errorf("refresh called %d times, want 1", len(refreshed))
	}
	if u.job().Status.Remints != 1 || u.chain().InFlight != "" {
		t.Errorf("remints %d, marker %q", u.job().Status.Remints, u.chain().InFlight)
	}
}

func TestErrorClasses(t *testing.T) {
	cases := []struct {
		name        string
		grant       jobtokenv1alpha1.GrantType
		err         error
		wantMint    bool
		wantKeep    bool // the chain stays as it was and is refreshed at the next attempt
		wantCond    string
		wantStalled bool
		wantRequeue bool
	}{
		{"transient keeps the chain and backs off", jobtokenv1alpha1.GrantPassword,
			&issuer.Error{Class: issuer.ClassTransient, Op: "refresh", StatusCode: 503}, false, true, jobtokenv1alpha1.ConditionTokenRefreshFailed, false, true},
		{"dead chain re-mints a Password grant", jobtokenv1alpha1.GrantPassword,
			&issuer.Error{Class: issuer.ClassDeadChain, Op: "refresh", Code: "invalid_grant"}, true, false, "", false, true},
		{"unknown outcome re-mints a Password grant", jobtokenv1alpha1.GrantPassword,
			&issuer.Error{Class: issuer.ClassOutcomeUnknown, Op: "refresh"}, true, false, "", false, true},
		{"dead chain loses a RefreshToken grant", jobtokenv1alpha1.GrantRefreshToken,
			&issuer.Error{Class: issuer.ClassDeadChain, Op: "refresh", Code: "invalid_grant"}, false, false, jobtokenv1alpha1.ConditionCredentialsLost, false, true},
		{"configuration stalls", jobtokenv1alpha1.GrantPassword,
			&issuer.Error{Class: issuer.ClassConfiguration, Op: "refresh", Code: "invalid_client"}, false, false, jobtokenv1alpha1.ConditionStalled, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newUnitEnv(t, tc.grant, interceptor.Funcs{})
			u.start()
			before := u.chain()
			remints := u.job().Status.Remints
			// The first refresh fails with tc.err; later ones succeed, for the refresh token
			// the issuer holds as current only (a spent one is a dead chain, as at a real issuer).
			var presented []string
			current := before.RefreshToken
			u.issuer.WithRefresh(func(_ context.Context, rt string) (*issuer.TokenSet, error) {
				presented = append(presented, rt)
				if len(presented) == 1 {
					return nil, tc.err
				}
				if rt != current {
					return nil, &issuer.Error{Class: issuer.ClassDeadChain, Op: "refresh", Code: "invalid_grant"}
				}
				ts := u.tokens("refreshed")
				current = ts.RefreshToken
				return ts, nil
			})
			u.issuer.WithMint(func(context.Context, issuer.Grant) (*issuer.TokenSet, error) {
				u.mints++
				ts := u.tokens("reminted")
				current = ts.RefreshToken
				return ts, nil
			})
			mints := u.mints
			calls := len(u.issuer.Calls())
			u.clock.Step(31 * time.Second)
			res, err := u.reconcile()
			if tc.wantStalled != (err != nil) {
				t.Fatalf("err = %v, want terminal %v", err, tc.wantStalled)
			}
			if (u.mints > mints) != tc.wantMint {
				t.Errorf("minted %v, want %v", u.mints > mints, tc.wantMint)
			}
			job := u.job()
			if tc.wantCond != "" && !meta.IsStatusConditionTrue(job.Status.Conditions, tc.wantCond) {
				t.Errorf("condition %s not set: %+v", tc.wantCond, job.Status.Conditions)
			}
			if tc.wantRequeue != (res.RequeueAfter > 0) {
				t.Errorf("RequeueAfter = %s", res.RequeueAfter)
			}
			after := u.chain()
			if tc.grant == jobtokenv1alpha1.GrantRefreshToken && after.InFlight == "" {
				t.Errorf("a lost one-shot chain must keep its marker so it is never replayed")
			}
			if len(presented) != 1 || presented[0] != before.RefreshToken {
				t.Fatalf("refresh presented %d tokens, want the chain's one once", len(presented))
			}
			if tc.wantKeep {
				if after.RefreshToken != before.RefreshToken || after.AccessToken != before.AccessToken || after.Generation != before.Generation {
					t.Errorf("the chain changed: generation %d -> %d, refresh token kept %v, access token kept %v",
						before.Generation, after.Generation, after.RefreshToken == before.RefreshToken, after.AccessToken == before.AccessToken)
				}
				if after.InFlight != "" {
					t.Errorf("marker %q left behind: the next pass would treat the kept chain as spent", after.InFlight)
				}
				// The next attempt, after the backoff, refreshes the kept chain, and the issuer
				// accepts it.
				u.clock.Step(res.RequeueAfter)
				if _, err := u.reconcile(); err != nil {
					t.Fatalf("retry: %v", err)
				}
				if len(presented) != 2 || presented[1] != before.RefreshToken {
					t.Fatalf("the retry presented %d tokens, want the kept refresh token once more", len(presented)-1)
				}
				v, job := u.chain(), u.job()
				if v.Generation != before.Generation+1 || v.RefreshToken != current || v.InFlight != "" || job.Status.Rotations != 1 || u.mints != mints {
					t.Errorf("the retry did not rotate the kept chain: generation %d -> %d, rotations %d, mints %d -> %d, marker %q",
						before.Generation, v.Generation, job.Status.Rotations, mints, u.mints, v.InFlight)
				}
			}
			if tc.wantMint {
				if got := u.issuer.Calls()[calls:]; len(got) != 2 || got[0] != "refresh" || got[1] != "mint" {
					t.Errorf("issuer calls = %v, want refresh then mint", got)
				}
				if job.Status.Remints != remints+1 {
					t.Errorf("remints %d -> %d, want one more", remints, job.Status.Remints)
				}
				if after.Generation <= before.Generation || after.RefreshToken != current || after.AccessToken == before.AccessToken || after.InFlight != "" {
					t.Errorf("no new chain persisted: generation %d -> %d, refresh token is the minted one %v, access token replaced %v, marker %q",
						before.Generation, after.Generation, after.RefreshToken == current, after.AccessToken != before.AccessToken, after.InFlight)
				}
				// The next rotation refreshes the new chain; the spent token is never sent again.
				u.clock.Step(31 * time.Second)
				if _, err := u.reconcile(); err != nil {
					t.Fatalf("next rotation: %v", err)
				}
				for _, rt := range presented[1:] {
					if rt == before.RefreshToken {
						t.Errorf("the spent refresh token was presented again")
					}
				}
				if len(presented) != 2 || u.job().Status.Rotations != 1 {
					t.Errorf("the re-minted chain was not refreshed at the next rotation: %d refreshes after the re-mint, rotations %d",
						len(presented)-1, u.job().Status.Rotations)
				}
			}
		})
	}
}

// Routine status fields (the rotation counter, token times) reach the API at most once
// per StatusInterval; the stored chain keeps the count meanwhile, and a change a person
// watches is written at once.
func TestRoutineStatusWaitsForTheInterval(t *testing.T) {
	patches := 0
	funcs := interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if _, ok := obj.(*jobtokenv1alpha1.ImportJob); ok && sub == "status" {
				patches++
			}
			return c.Status().Patch(ctx, obj, patch, opts...)
		},
	}
	u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, funcs)
	u.r.StatusInterval = 10 * time.Minute
	u.start()
	if patches == 0 {
		t.Fatal("the first token's status was not written")
	}
	for i := 1; i <= 3; i++ {
		before := patches
		u.clock.Step(31 * time.Second)
		res, err := u.reconcile()
		if err != nil {
			t.Fatal(err)
		}
		if patches != before {
			t.Errorf("rotation %d wrote the status although only routine fields changed", i)
		}
		if got := u.chain().Rotations; got != int64(i) {
			t.Errorf("the stored chain counts %d rotations, want %d", got, i)
		}
		if res.RequeueAfter <= 0 || res.RequeueAfter > 10*time.Minute {
			t.Errorf("RequeueAfter %s: the held-back status must be written within the interval", res.RequeueAfter)
		}
	}
	if got := u.job().Status.Rotations; got != 0 {
		t.Errorf("status shows %d rotations before the interval passed", got)
	}
	// Past the interval the next pass writes the counters as the chain holds them.
	u.clock.Step(10 * time.Minute)
	if _, err := u.reconcile(); err != nil {
		t.Fatal(err)
	}
	if got, want := u.job().Status.Rotations, u.chain().Rotations; got != want || got < 3 {
		t.Errorf("status shows %d rotations after the interval, the chain %d", got, want)
	}
	// A rotation someone asked for is written at once: they wait for it.
	before := patches
	u.requestRotation()
	if _, err := u.reconcile(); err != nil {
		t.Fatal(err)
	}
	if patches == before || u.job().Status.Rotations != u.chain().Rotations {
		t.Errorf("a requested rotation's status was held back (patches %d -> %d, rotations %d, chain %d)",
			before, patches, u.job().Status.Rotations, u.chain().Rotations)
	}
	// A failure is written at once.
	before = patches
	u.issuer.WithRefresh(func(context.Context, string) (*issuer.TokenSet, error) {
		return nil, &issuer.Error{Class: issuer.ClassTransient, Op: "refresh", StatusCode: 503}
	})
	u.clock.Step(31 * time.Second)
	_, _ = u.reconcile()
	if patches == before || !meta.IsStatusConditionTrue(u.job().Status.Conditions, jobtokenv1alpha1.ConditionTokenRefreshFailed) {
		t.Errorf("a failed rotation was not written at once (patches %d -> %d)", before, patches)
	}
}

// requestRotation sets the rotate-now annotation as a user would.
func (u *unitEnv) requestRotation() {
	u.t.Helper()
	j := u.job()
	metav1.SetMetaDataAnnotation(&j.ObjectMeta, jobtokenv1alpha1.AnnotationRotateNow, "now")
	if err := u.r.Update(context.Background(), j); err != nil {
		u.t.Fatal(err)
	}
}
