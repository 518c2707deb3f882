// Package scheme builds the runtime scheme of the operator: the built-in Kubernetes types
// and the jobtoken.dev types.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// New returns a scheme with the built-in types and the jobtoken.dev types.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(jobtokenv1alpha1.AddToScheme(s))
	return s
}
