package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// grantInput reads what the grant needs from its Secret in the job's namespace.
func (r *ImportJobReconciler) grantInput(ctx context.Context, s *scope) (issuer.Grant, error) {
	c := s.job.Spec.Credentials
	g := issuer.Grant{Type: issuer.GrantType(c.Grant), Scopes: c.Scopes, Audience: c.Audience}
	ns := s.job.Namespace
	var err error
	switch c.Grant {
	case jobtokenv1alpha1.GrantPassword:
		if g.Username, err = readSecretKey(ctx, r.APIReader, ns, c.Password.SecretRef.Name, keyOr(c.Password.UsernameKey, "username")); err != nil {
			return g, err
		}
		g.Password, err = readSecretKey(ctx, r.APIReader, ns, c.Password.SecretRef.Name, keyOr(c.Password.PasswordKey, "password"))
	case jobtokenv1alpha1.GrantTokenExchange:
		te := c.TokenExchange
		g.SubjectTokenType, g.RequestedTokenType = te.SubjectTokenType, te.RequestedTokenType
		g.SubjectToken, err = readSecretKey(ctx, r.APIReader, ns, te.SubjectTokenSecretRef.Name, keyOr(te.SubjectTokenSecretRef.Key, "token"))
	case jobtokenv1alpha1.GrantRefreshToken:
		rt := c.RefreshToken
		g.RefreshToken, err = readSecretKey(ctx, r.APIReader, ns, rt.SecretRef.Name, keyOr(rt.SecretRef.Key, "refresh_token"))
	}
	return g, err
}

// removeRedeemedInput deletes the submitter's token from its Secret once redeemed, so
// that no user token lingers (opt out with removeAfterRedeem: false).
func (r *ImportJobReconciler) removeRedeemedInput(ctx context.Context, s *scope) {
	c := s.job.Spec.Credentials
	var name, key string
	switch {
	case c.TokenExchange != nil && (c.TokenExchange.RemoveAfterRedeem == nil || *c.TokenExchange.RemoveAfterRedeem):
		name, key = c.TokenExchange.SubjectTokenSecretRef.Name, keyOr(c.TokenExchange.SubjectTokenSecretRef.Key, "token")
	case c.RefreshToken != nil && (c.RefreshToken.RemoveAfterRedeem == nil || *c.RefreshToken.RemoveAfterRedeem):
		name, key = c.RefreshToken.SecretRef.Name, keyOr(c.RefreshToken.SecretRef.Key, "refresh_token")
	default:
		return
	}
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: s.job.Namespace, Name: name}, secret); err != nil {
		ctrl.LoggerFrom(ctx).Info("Could not read the redeemed grant input to remove it", "secret", name, "error", err.Error())
		return
	}
	if _, ok := secret.Data[key]; !ok {
		return
	}
	patch := client.MergeFrom(secret.DeepCopy())
	delete(secret.Data, key)
	if err := r.Patch(ctx, secret, patch); err != nil {
		ctrl.LoggerFrom(ctx).Info("Could not remove the redeemed grant input", "secret", name, "key", key, "error", err.Error())
		return
	}
	r.event(s.job, corev1.EventTypeNormal, EventMinted, "Redeem", "Removed the redeemed key %q from Secret %s", key, name)
}
