// Command pause is the pod sandbox's process: it holds the pod's namespaces and waits
// for SIGTERM or SIGINT. The node imports it as its sandbox image because no registry
// can be reached to pull the usual one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
