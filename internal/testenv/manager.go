package testenv

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/jobtoken/jobtoken/internal/manager"
)

// managerStopWait bounds how long Stop waits for a manager to return: a manager that
// does not stop fails its test instead of hanging it.
const managerStopWait = 30 * time.Second

// RunningManager is the operator's manager started in the test process.
type RunningManager struct {
	ctrl.Manager
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	err    error // what Start returned; read after done is closed
}

// StartManager builds the manager cmd/manager runs (manager.New), lets setup add the
// controllers to it (controllers.SetupAll, which this package cannot import: the
// controllers tests use it), and starts it until ctx ends or Stop is called. Every
// in-process manager of the tests, the demo and optest starts here.
func StartManager(ctx context.Context, cfg *rest.Config, opts manager.Options, setup func(ctrl.Manager) error) (*RunningManager, error) {
	mgr, err := manager.New(cfg, opts)
	if err != nil {
		return nil, err
	}
	if setup != nil {
		if err := setup(mgr); err != nil {
			return nil, fmt.Errorf("set up the controllers: %w", err)
		}
	}
	mctx, cancel := context.WithCancel(ctx)
	m := &RunningManager{Manager: mgr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		if err := mgr.Start(mctx); err != nil {
			m.err = fmt.Errorf("manager stopped: %w", err)
		}
	}()
	return m, nil
}

// Stop cancels the manager and waits for it to return, at most 30 s. It returns the
// error the manager stopped with, or says that it did not stop; later calls do nothing
// and return nil, so that a test may stop a manager early and again at its end.
func (m *RunningManager) Stop() error {
	var err error
	m.once.Do(func() {
		m.cancel()
		select {
		case <-m.done:
			err = m.err
		case <-time.After(managerStopWait):
			err = fmt.Errorf("the manager did not stop within %s", managerStopWait)
		}
	})
	return err
}
