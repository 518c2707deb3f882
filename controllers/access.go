package controllers

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// clusterIssuerRefusal says why a ClusterTokenIssuer may not serve a job of namespace
// namespace (whose labels are nsLabels), or "" when it may. A cluster issuer's client
// is shared by every namespace it allows, so what one tenant may ask of it is bounded
// by what its owner wrote: the namespaces, the grants, and a ceiling of scopes and
// audiences.
func clusterIssuerRefusal(issuerName string, allowed *jobtokenv1alpha1.ClusterIssuerAllowed, defaults jobtokenv1alpha1.TokenIssuerSpec,
	namespace string, nsLabels map[string]string, creds jobtokenv1alpha1.CredentialsSpec) string {
	if allowed == nil {
		return ""
	}
	if msg := namespaceRefusal(allowed, namespace, nsLabels); msg != "" {
		return issuerName + ": " + msg
	}
	if !slices.Contains(allowed.Grants, creds.Grant) {
		return fmt.Sprintf("%s: spec.credentials.grant %s is not among the issuer's allowed grants [%s]",
			issuerName, creds.Grant, joinGrants(allowed.Grants))
	}
	var defaultScopes, defaultAudience []string
	if defaults.OAuth2 != nil {
		defaultScopes, defaultAudience = defaults.OAuth2.Scopes, defaults.OAuth2.Audience
	}
	if msg := ceilingRefusal("spec.credentials.scopes", creds.Scopes, allowed.Scopes, defaultScopes); msg != "" {
		return issuerName + ": " + msg
	}
	if msg := ceilingRefusal("spec.credentials.audience", creds.Audience, allowed.Audience, defaultAudience); msg != "" {
		return issuerName + ": " + msg
	}
	return ""
}

// namespaceRefusal says why namespace is not among those allowed, or "".
func namespaceRefusal(allowed *jobtokenv1alpha1.ClusterIssuerAllowed, namespace string, nsLabels map[string]string) string {
	if slices.Contains(allowed.Namespaces, namespace) {
		return ""
	}
	if allowed.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(allowed.NamespaceSelector)
		if err != nil {
			return fmt.Sprintf("its spec.allowed.namespaceSelector is invalid (%v), so it allows no namespace by label", err)
		}
		if sel.Matches(labels.Set(nsLabels)) {
			return ""
		}
	}
	return fmt.Sprintf("namespace %s is not allowed to use it (spec.allowed.namespaces or spec.allowed.namespaceSelector of the issuer)", namespace)
}

// ceilingRefusal says which requested values exceed the ceiling, or "". The ceiling is
// the allowed list, or the issuer's defaults when the allowed list is empty.
func ceilingRefusal(field string, requested, allowed, defaults []string) string {
	ceiling, source := allowed, "spec.allowed"
	if len(ceiling) == 0 {
		ceiling, source = defaults, "its defaults"
	}
	var extra []string
	for _, v := range requested {
		if !slices.Contains(ceiling, v) {
			extra = append(extra, v)
		}
	}
	if len(extra) == 0 {
		return ""
	}
	return fmt.Sprintf("%s asks for %q beyond the issuer's ceiling (%s: [%s])", field, extra, source, strings.Join(ceiling, " "))
}

func joinGrants(gs []jobtokenv1alpha1.GrantType) string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = string(g)
	}
	return strings.Join(out, " ")
}
