// Package controllers holds the reconcilers of the jobtoken.dev API.
package controllers

// RBAC of the manager: exactly the verbs the code uses (config/rbac/expected-rules.txt
// is the reviewed list; TestShippedRBACIsTheExpectedList compares them). The vault
// Secrets live in the operator's namespace ("system" before kustomize renames it), the
// only Secrets the manager updates in place; worker Secrets, Jobs and pods live in the
// jobs' namespaces, where Secrets are created, applied (patch) and deleted, and Jobs are
// only created (the garbage collector deletes them with their ImportJob). Issuers are
// only read; their status is updated, an ImportJob's status patched.
//
// +kubebuilder:rbac:groups=jobtoken.dev,resources=importjobs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=jobtoken.dev,resources=tokenissuers;clustertokenissuers,verbs=get;list;watch
// +kubebuilder:rbac:groups=jobtoken.dev,resources=importjobs/status,verbs=patch
// +kubebuilder:rbac:groups=jobtoken.dev,resources=tokenissuers/status;clustertokenissuers/status,verbs=update
// +kubebuilder:rbac:groups=jobtoken.dev,resources=importjobs/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create
