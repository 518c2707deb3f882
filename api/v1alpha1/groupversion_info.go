// Package v1alpha1 contains the jobtoken.dev/v1alpha1 API: ImportJob, TokenIssuer and
// ClusterTokenIssuer.
// +kubebuilder:object:generate=true
// +groupName=jobtoken.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of this package.
	GroupVersion = schema.GroupVersion{Group: "jobtoken.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&ImportJob{}, &ImportJobList{},
		&TokenIssuer{}, &TokenIssuerList{},
		&ClusterTokenIssuer{}, &ClusterTokenIssuerList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
