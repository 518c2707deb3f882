// Package controllers holds the reconcilers of the jobtoken.dev API.
package controllers

// RBAC of the manager. The vault Secrets live in the operator's namespace; worker
// Secrets, Jobs and pods in the jobs' namespaces.
//
// +kubebuilder:rbac:groups=jobtoken.dev,resources=importjobs;tokenissuers;clustertokenissuers,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=jobtoken.dev,resources=importjobs/status;tokenissuers/status;clustertokenissuers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=jobtoken.dev,resources=importjobs/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
