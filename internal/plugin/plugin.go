// Package plugin is the kubectl jobtoken plugin: it shows and acts on ImportJobs for the
// people who run imports. It reads kubeconfig and the usual kubectl flags
// (genericclioptions), and never reads or prints a token: it touches ImportJobs and
// Events only, never Secrets.
package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/scheme"
	"github.com/jobtoken/jobtoken/internal/version"
)

// options are what every command shares.
type options struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	clock   clock.PassiveClock
	// pollInterval is how often rotate and revoke look at the ImportJob while waiting.
	pollInterval time.Duration
}

// NewCommand returns the root command of kubectl-jobtoken, writing to streams.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &options{
		flags:        genericclioptions.NewConfigFlags(true),
		streams:      streams,
		clock:        clock.RealClock{},
		pollInterval: 250 * time.Millisecond,
	}
	root := &cobra.Command{
		Use:   "kubectl-jobtoken",
		Short: "See and act on jobtoken ImportJobs and their credentials",
		Long: `kubectl jobtoken shows the credentials jobtoken keeps for ImportJobs and acts on them.
It never prints a token: it reads ImportJobs and their Events, never Secrets.`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	o.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(o.statusCommand(), o.rotateCommand(), o.revokeCommand(), o.historyCommand())
	return root
}

// conn is what every command works with: a controller-runtime client (ImportJobs), a
// clientset (Events) and the command's namespace.
type conn struct {
	client.Client
	events kubernetes.Interface
	// ns is --namespace, else the kubeconfig context's namespace.
	ns string
}

// connect builds the clients from the kubeconfig flags and resolves the namespace.
func (o *options) connect() (*conn, error) {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, err
	}
	return &conn{Client: c, events: cs, ns: ns}, nil
}

// job reads one ImportJob of the command's namespace.
func (c *conn) job(ctx context.Context, name string) (*jobtokenv1alpha1.ImportJob, error) {
	job := &jobtokenv1alpha1.ImportJob{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: name}, job); err != nil {
		return nil, err
	}
	return job, nil
}

// waitFor polls cond until it returns true, an error, or the timeout passes.
func (o *options) waitFor(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := cond(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		case <-time.After(o.pollInterval):
		}
	}
}
