package controllers

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// tokenFileMode is the mode of the projected token files: readable by the container
// user only.
const tokenFileMode int32 = 0o400

func ownedLabels(job *jobtokenv1alpha1.ImportJob, role string) map[string]string {
	return map[string]string{
		jobtokenv1alpha1.LabelManagedBy:     jobtokenv1alpha1.ManagedByValue,
		jobtokenv1alpha1.LabelRole:          role,
		jobtokenv1alpha1.LabelImportJobName: job.Name,
	}
}

func controllerRef(job *jobtokenv1alpha1.ImportJob) metav1.OwnerReference {
	return *metav1.NewControllerRef(job, jobtokenv1alpha1.GroupVersion.WithKind("ImportJob"))
}

// unreadableTokenFile names the first container that runs as a non-root user in a pod
// without fsGroup: the token files are owned by root with mode 0400, and only fsGroup
// makes the kubelet hand them to a group the worker is in (mode 0440). Such a worker
// cannot read its token, and the fix must not be to run it as root. A container whose
// user is left to its image is not judged. Empty when every container can read it.
func unreadableTokenFile(job *jobtokenv1alpha1.ImportJob) string {
	pod := job.Spec.Template.Spec.Template.Spec
	var podUser *int64
	podNonRoot := false
	if psc := pod.SecurityContext; psc != nil {
		if psc.FSGroup != nil {
			return ""
		}
		podUser, podNonRoot = psc.RunAsUser, ptr.Deref(psc.RunAsNonRoot, false)
	}
	for _, group := range []struct {
		field      string
		containers []corev1.Container
	}{{"initContainers", pod.InitContainers}, {"containers", pod.Containers}} {
		for _, c := range group.containers {
			user, nonRoot := podUser, podNonRoot
			if csc := c.SecurityContext; csc != nil {
				if csc.RunAsUser != nil {
					user = csc.RunAsUser
				}
				if csc.RunAsNonRoot != nil {
					nonRoot = *csc.RunAsNonRoot
				}
			}
			who := ""
			switch {
			case user != nil && *user != 0:
				who = "user " + strconv.FormatInt(*user, 10)
			case user == nil && nonRoot:
				who = "a non-root user (runAsNonRoot)"
			default:
				continue
			}
			return fmt.Sprintf("%s %q runs as %s but the pod template sets no securityContext.fsGroup "+
				"(spec.template.spec.template.spec.securityContext.fsGroup): the token files are owned by root with mode 0400 "+
				"and it cannot read them; set fsGroup (for example to the worker's group) rather than running it as root",
				strings.TrimSuffix(group.field, "s"), c.Name, who)
		}
	}
	return ""
}

// validateTemplate refuses templates that mount the token themselves, which admission
// cannot check within the CEL cost budget: a subPath mount is never updated by the
// kubelet, so such workers would read a stale token after the first rotation.
func validateTemplate(job *jobtokenv1alpha1.ImportJob) error {
	podSpec := job.Spec.Template.Spec.Template.Spec
	tokenSecret := workerSecretName(job)
	for i, v := range podSpec.Volumes {
		if v.Name == jobtokenv1alpha1.TokenVolumeName {
			return fmt.Errorf("spec.template.spec.template.spec.volumes[%d]: the name %q is reserved for the token volume", i, v.Name)
		}
		if v.Secret != nil && v.Secret.SecretName == tokenSecret {
			return fmt.Errorf("spec.template.spec.template.spec.volumes[%d]: mounts the token Secret %q itself; the operator mounts it", i, tokenSecret)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == tokenSecret {
					return fmt.Errorf("spec.template.spec.template.spec.volumes[%d].projected: projects the token Secret %q itself; the operator mounts it", i, tokenSecret)
				}
			}
		}
	}
	check := func(field string, containers []corev1.Container) error {
		for i, c := range containers {
			for j, m := range c.VolumeMounts {
				if m.Name == jobtokenv1alpha1.TokenVolumeName {
					return fmt.Errorf("spec.template.spec.template.spec.%s[%d].volumeMounts[%d]: mounts the token volume itself (subPath %q); the operator mounts it read-only without subPath", field, i, j, m.SubPath)
				}
				if m.MountPath == job.Spec.TokenMountPath {
					return fmt.Errorf("spec.template.spec.template.spec.%s[%d].volumeMounts[%d]: mountPath %q is taken by the token volume (spec.tokenMountPath)", field, i, j, m.MountPath)
				}
			}
		}
		return nil
	}
	if err := check("initContainers", podSpec.InitContainers); err != nil {
		return err
	}
	return check("containers", podSpec.Containers)
}

// buildJob returns the workers' batch Job: the template with the token volume and
// JOBTOKEN_FILE injected into every container.
func buildJob(job *jobtokenv1alpha1.ImportJob, revision int64) *batchv1.Job {
	tmpl := job.Spec.Template.DeepCopy()
	mountPath := job.Spec.TokenMountPath
	if mountPath == "" {
		mountPath = jobtokenv1alpha1.DefaultTokenMountPath
	}
	labels := ownedLabels(job, jobtokenv1alpha1.RoleWorker)

	out := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       job.Namespace,
			Name:            job.Name,
			Labels:          mergeMaps(tmpl.Labels, labels),
			Annotations:     tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{controllerRef(job)},
		},
		Spec: tmpl.Spec,
	}
	pod := &out.Spec.Template
	pod.Labels = mergeMaps(pod.Labels, labels)
	pod.Annotations = mergeMaps(pod.Annotations, map[string]string{
		jobtokenv1alpha1.AnnotationTokenRevision: strconv.FormatInt(revision, 10),
	})
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
		Name: jobtokenv1alpha1.TokenVolumeName,
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  workerSecretName(job),
			DefaultMode: ptr.To(tokenFileMode),
		}},
	})
	inject := func(c *corev1.Container) {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{
			Name: jobtokenv1alpha1.TokenVolumeName, MountPath: mountPath, ReadOnly: true,
		})
		c.Env = append(c.Env, corev1.EnvVar{
			Name: jobtokenv1alpha1.EnvTokenFile, Value: path.Join(mountPath, jobtokenv1alpha1.KeyAccessToken),
		})
	}
	for i := range pod.Spec.InitContainers {
		inject(&pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		inject(&pod.Spec.Containers[i])
	}
	return out
}

// workerSecretData is what the workers see: the access token, its type and expiry.
func workerSecretData(accessToken, tokenType string, expiresAt time.Time) map[string][]byte {
	if tokenType == "" {
		tokenType = "Bearer"
	}
	return map[string][]byte{
		jobtokenv1alpha1.KeyAccessToken: []byte(accessToken),
		jobtokenv1alpha1.KeyTokenType:   []byte(tokenType),
		jobtokenv1alpha1.KeyExpiresAt:   []byte(expiresAt.UTC().Format(time.RFC3339)),
	}
}

func mergeMaps(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// jobFinished reports whether the batch Job completed or failed, and which.
func jobFinished(j *batchv1.Job) (finished, succeeded bool) {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete, batchv1.JobSuccessCriteriaMet:
			return true, true
		case batchv1.JobFailed, batchv1.JobFailureTarget:
			return true, false
		}
	}
	return false, false
}
