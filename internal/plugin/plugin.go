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

// clients builds a controller-runtime client (ImportJobs) and a clientset (Events) from
// the kubeconfig flags.
func (o *options) clients() (client.Client, kubernetes.Interface, error) {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	return c, cs, nil
}

// namespace is the namespace of the command: --namespace, else the kubeconfig context's.
func (o *options) namespace() (string, error) {
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	return ns, err
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
