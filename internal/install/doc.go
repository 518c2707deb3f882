// Package install holds the tests of what a platform team installs: the Helm chart
// (charts/jobtoken) and the release manifest (hack/release.sh, dist/install.yaml), each
// applied to the real kube-apiserver with the manager then running on the RBAC it
// installed.
package install
