// Package watchns tests the operator installed to serve listed namespaces only
// (config/watch-namespaces, the manager's --watch-namespaces) against the real
// kube-apiserver: in a control plane of its own, because the install shares object
// names with config/default's.
package watchns
