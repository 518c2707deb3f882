package plugin

import (
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// Entry is one line of `history`: an event about the ImportJob.
type Entry struct {
	Time    time.Time
	Type    string
	Reason  string
	Count   int32
	Message string
}

func (o *options) historyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "Show the job's mints, rotations, re-mints, failures and revocation from its events, oldest first",
		Long: `history lists the events the operator recorded about an ImportJob as a timeline. Events
are kept by the API server for a limited time (one hour by default) and repeats of the
same event are counted on one line (COUNT), so the rotation counters of status are the
complete record.`,
		Example: `  kubectl jobtoken history marc-import -n imports`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			job, err := c.job(ctx, args[0])
			if err != nil {
				return err
			}
			sel := fields.Set{"involvedObject.uid": string(job.UID)}.AsSelector().String()
			list, err := c.events.CoreV1().Events(c.ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
			if err != nil {
				return err
			}
			entries := make([]Entry, 0, len(list.Items))
			for i := range list.Items {
				entries = append(entries, entryOf(&list.Items[i]))
			}
			slices.SortStableFunc(entries, func(a, b Entry) int { return a.Time.Compare(b.Time) })
			if len(entries) == 0 {
				_, err := fmt.Fprintf(o.streams.Out, "No events recorded for importjob/%s.\n", job.Name)
				return err
			}
			tw := tabwriter.NewWriter(o.streams.Out, 0, 8, 3, ' ', 0)
			// The tabwriter buffers; its Flush below reports a failed write.
			_, _ = fmt.Fprintln(tw, "TIME\tTYPE\tREASON\tCOUNT\tMESSAGE")
			for _, e := range entries {
				_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Type, e.Reason, e.Count, e.Message)
			}
			return tw.Flush()
		},
	}
	return cmd
}

// entryOf reads an event written through either events API: events.k8s.io events carry
// eventTime and a series, core events firstTimestamp, lastTimestamp and count.
func entryOf(e *corev1.Event) Entry {
	en := Entry{Type: e.Type, Reason: e.Reason, Message: e.Message, Count: max(e.Count, 1)}
	switch {
	case !e.EventTime.IsZero():
		en.Time = e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		en.Time = e.FirstTimestamp.Time
	default:
		en.Time = e.CreationTimestamp.Time
	}
	if e.Series != nil {
		en.Count = e.Series.Count + 1
	}
	return en
}
