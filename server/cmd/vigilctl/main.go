// Command vigilctl lists, follows and shows the incidents a Vigil server
// has stored. Run 'vigilctl --help' for usage; the program lives in package
// cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/vigil-sensor/vigil/server/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
