package controllers

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

func TestClusterIssuerRefusal(t *testing.T) {
	password := jobtokenv1alpha1.GrantPassword
	cc := jobtokenv1alpha1.GrantClientCredentials
	defaults := jobtokenv1alpha1.TokenIssuerSpec{OAuth2: &jobtokenv1alpha1.OAuth2IssuerSpec{
		Scopes: []string{"openid", "import"}, Audience: []string{"import-api"},
	}}
	byName := &jobtokenv1alpha1.ClusterIssuerAllowed{Namespaces: []string{"team-a"}, Grants: []jobtokenv1alpha1.GrantType{password}}
	byLabel := &jobtokenv1alpha1.ClusterIssuerAllowed{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"imports": "yes"}},
		Grants:            []jobtokenv1alpha1.GrantType{password, cc},
		Scopes:            []string{"import", "export"},
	}
	everyNamespace := &jobtokenv1alpha1.ClusterIssuerAllowed{NamespaceSelector: &metav1.LabelSelector{}, Grants: []jobtokenv1alpha1.GrantType{cc}}
	badSelector := &jobtokenv1alpha1.ClusterIssuerAllowed{
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}},
		Grants:            []jobtokenv1alpha1.GrantType{cc},
	}
	cases := []struct {
		name    string
		allowed *jobtokenv1alpha1.ClusterIssuerAllowed
		ns      string
		labels  map[string]string
		creds   jobtokenv1alpha1.CredentialsSpec
		// want is "" when the job is allowed, else substrings of the refusal.
		want []string
	}{
		{"a TokenIssuer has no limits", nil, "any", nil, jobtokenv1alpha1.CredentialsSpec{Grant: cc, Scopes: []string{"admin"}}, nil},
		{"listed namespace", byName, "team-a", nil, jobtokenv1alpha1.CredentialsSpec{Grant: password}, nil},
		{"unlisted namespace", byName, "team-b", nil, jobtokenv1alpha1.CredentialsSpec{Grant: password}, []string{"namespace team-b", "spec.allowed.namespaces"}},
		{"namespace with the label", byLabel, "team-b", map[string]string{"imports": "yes"}, jobtokenv1alpha1.CredentialsSpec{Grant: cc}, nil},
		{"namespace without the label", byLabel, "team-b", map[string]string{"imports": "no"}, jobtokenv1alpha1.CredentialsSpec{Grant: cc}, []string{"namespace team-b"}},
		{"the empty selector selects every namespace", everyNamespace, "x", nil, jobtokenv1alpha1.CredentialsSpec{Grant: cc}, nil},
		{"an invalid selector selects none", badSelector, "x", map[string]string{"a": "b"}, jobtokenv1alpha1.CredentialsSpec{Grant: cc}, []string{"namespaceSelector is invalid"}},
		{"grant not allowed", byName, "team-a", nil, jobtokenv1alpha1.CredentialsSpec{Grant: cc}, []string{"grant ClientCredentials", "[Password]"}},
		{"scopes within the allowed ceiling", byLabel, "n", map[string]string{"imports": "yes"}, jobtokenv1alpha1.CredentialsSpec{Grant: cc, Scopes: []string{"export"}}, nil},
		{"scope beyond the allowed ceiling", byLabel, "n", map[string]string{"imports": "yes"}, jobtokenv1alpha1.CredentialsSpec{Grant: cc, Scopes: []string{"import", "admin"}}, []string{"spec.credentials.scopes", `"admin"`, "spec.allowed"}},
		{"scopes within the defaults", byName, "team-a", nil, jobtokenv1alpha1.CredentialsSpec{Grant: password, Scopes: []string{"import"}}, nil},
		{"scope beyond the defaults", byName, "team-a", nil, jobtokenv1alpha1.CredentialsSpec{Grant: password, Scopes: []string{"offline_access"}}, []string{`"offline_access"`, "its defaults"}},
		{"audience beyond the defaults", byName, "team-a", nil, jobtokenv1alpha1.CredentialsSpec{Grant: password, Audience: []string{"billing"}}, []string{"spec.credentials.audience", `"billing"`}},
		{"audience within the defaults", byName, "team-a", nil, jobtokenv1alpha1.CredentialsSpec{Grant: password, Audience: []string{"import-api"}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := clusterIssuerRefusal("ClusterTokenIssuer/shared", tc.allowed, defaults, tc.ns, tc.labels, tc.creds)
			if len(tc.want) == 0 {
				if got != "" {
					t.Fatalf("refused: %s", got)
				}
				return
			}
			if got == "" {
				t.Fatalf("allowed, want refused naming %q", tc.want)
			}
			for _, w := range append(tc.want, "ClusterTokenIssuer/shared") {
				if !strings.Contains(got, w) {
					t.Errorf("refusal %q does not name %q", got, w)
				}
			}
		})
	}
}
