package testenv

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// The objects every harness starts from. Each caller sets on the result only what its
// test varies, so a change of the API (a new required field, a renamed key) is made here
// once.

// ImportJob returns an ImportJob on the issuer with the Password grant of the user in
// userSecret (keys username and password) and one worker container that is never
// restarted; rotation settings are the operator's defaults.
func ImportJob(namespace, name string, issuer jobtokenv1alpha1.IssuerReference, userSecret string) *jobtokenv1alpha1.ImportJob {
	return &jobtokenv1alpha1.ImportJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: jobtokenv1alpha1.ImportJobSpec{
			IssuerRef: issuer,
			Credentials: jobtokenv1alpha1.CredentialsSpec{
				Grant:    jobtokenv1alpha1.GrantPassword,
				Password: &jobtokenv1alpha1.PasswordGrant{SecretRef: jobtokenv1alpha1.LocalSecretReference{Name: userSecret}},
			},
			Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "importer", Image: "registry.example.com/marc-importer:1.4"}},
			}}}},
		},
	}
}

// OnTokenIssuer and OnClusterTokenIssuer are the issuer references of ImportJob.
func OnTokenIssuer(name string) jobtokenv1alpha1.IssuerReference {
	return jobtokenv1alpha1.IssuerReference{Kind: jobtokenv1alpha1.IssuerKindTokenIssuer, Name: name}
}

// OnClusterTokenIssuer names a ClusterTokenIssuer.
func OnClusterTokenIssuer(name string) jobtokenv1alpha1.IssuerReference {
	return jobtokenv1alpha1.IssuerReference{Kind: jobtokenv1alpha1.IssuerKindClusterTokenIssuer, Name: name}
}

// DevIssuerSpec is the spec of a TokenIssuer or ClusterTokenIssuer for the development
// issuer (or any OAuth2 issuer the tests run): discovery from issuerURL, plain http
// allowed because the tests' issuers listen on loopback http, and the client secret in
// the Secret clientSecret (key client-secret) sent with HTTP Basic.
func DevIssuerSpec(issuerURL, clientID, clientSecret string) jobtokenv1alpha1.TokenIssuerSpec {
	return jobtokenv1alpha1.TokenIssuerSpec{InsecureAllowPlainHTTP: true, OAuth2: &jobtokenv1alpha1.OAuth2IssuerSpec{
		IssuerURL: issuerURL, ClientID: clientID, ClientAuth: jobtokenv1alpha1.ClientAuthSecretBasic,
		ClientSecretRef: &jobtokenv1alpha1.SecretKeySelector{Name: clientSecret},
	}}
}

// UserSecret holds a user's login for the Password grant.
func UserSecret(namespace, name, user, password string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Data:       map[string][]byte{"username": []byte(user), "password": []byte(password)},
	}
}

// ClientSecret holds an OAuth2 client's secret, as DevIssuerSpec reads it.
func ClientSecret(namespace, name, secret string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Data:       map[string][]byte{"client-secret": []byte(secret)},
	}
}
