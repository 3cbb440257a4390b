// Command vigil-server receives incidents from Vigil agents, stores them in
// SQLite or PostgreSQL and serves them to vigilctl and other clients over gRPC.
// Run 'vigil-server --help' for usage.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-sensor/vigil/internal/version"
	"github.com/vigil-sensor/vigil/server/app"
	"github.com/vigil-sensor/vigil/server/console"
	"github.com/vigil-sensor/vigil/server/enroll"
	"github.com/vigil-sensor/vigil/server/grpcserver"
	"github.com/vigil-sensor/vigil/server/metrics"
	"github.com/vigil-sensor/vigil/server/ocsf"
	"github.com/vigil-sensor/vigil/server/store"
)

// DefaultDB is where the database lives unless --db says otherwise.
const DefaultDB = "/var/lib/vigil/server.db"

const usage = `vigil-server receives incidents from Vigil agents, stores them in a SQLite
or PostgreSQL database and serves them to vigilctl and other gRPC clients.

Agents connect to AgentService.Connect and report incidents; the server
stores each one once (by its id) and acknowledges it. Clients list, get and
follow incidents through IncidentService. The server runs until SIGTERM or
SIGINT, then lets running calls finish for up to --shutdown-timeout.

Usage:
  vigil-server [--listen ADDR] [--db PATH|URL] [--log-level LEVEL] [flags]
  vigil-server ca init DIR [--host NAME,...]   make a development CA and a
                                               server certificate in DIR
  vigil-server ca issue DIR NAME               make an agent certificate
                                               DIR/NAME.pem, DIR/NAME-key.pem
  vigil-server ca enroll-token DIR [--ttl D] [--uses N] [--name NAME]
                                               make a token an agent enrolls
                                               with (vigil-agent enroll)

Flags:
  --listen ADDR                 TCP address to listen on, host:port
                                (default 127.0.0.1:7470; use 0.0.0.0:7470
                                to accept agents from other hosts)
  --db PATH                     SQLite database file, created with its
                                directory when missing
                                (default /var/lib/vigil/server.db)
  --db URL                      or a PostgreSQL database, as a
                                postgres://USER:PASSWORD@HOST:PORT/DB URL
                                (postgresql:// too; the tables are created
                                when missing); several servers may share it
  --log-level LEVEL             debug, info, warn or error (default info);
                                debug also logs every heartbeat and incident
  --shutdown-timeout DURATION   how long to wait for running calls on
                                shutdown (default 10s)
  --metrics ADDR                serve Prometheus metrics at
                                http://ADDR/metrics (default 127.0.0.1:9470;
                                "" turns the endpoint off)
  --export-ocsf FILE            append every stored incident, each
                                revision, to FILE as one line of OCSF 1.1
                                Detection Finding JSON (default: no export)
  --export-webhook URL          POST every stored incident to URL (http://
                                or https://, user:password@ for basic auth)
                                as OCSF JSON lines, in batches of up to 100,
                                retried with backoff while it fails; never
                                slows ingest (default: no webhook)
  --console ADDR                serve the web console at http://ADDR/
                                (default 127.0.0.1:7471; "" turns it off)
  --tls-cert FILE               serve TLS with this certificate (PEM)
  --tls-key FILE                and its private key (PEM)
  --client-ca FILE              CA (PEM) that signs agent certificates:
                                agents must present one to connect;
                                other clients need none
  --tokens FILE                 bearer tokens of clients (YAML or JSON,
                                token or "sha256:HEX" -> {name, role});
                                viewer lists, gets and follows; responder
                                also triages and requests actions; admin
                                may call everything. Without it, clients
                                are not checked
  --agent-rate N                at most N incident reports a second per
                                agent, bursts of 5*N (default 0: no
                                limit); reports over it are read later,
                                never refused
  --enroll-ca DIR               let agents enroll: sign their certificates
                                with the CA in DIR (ca.pem, ca-key.pem of
                                'ca init') against enrollment tokens; needs
                                --tls-cert; --client-ca defaults to
                                DIR/ca.pem
  --enroll-tokens FILE          the enrollment tokens file (default
                                DIR/enroll-tokens.yaml of --enroll-ca)
  --version                     print the version and exit
  -h, --help                    show this help

Example:
  vigil-server --listen 0.0.0.0:7470 --db /var/lib/vigil/server.db
  vigil-server --listen 0.0.0.0:7470 --db postgres://vigil@db.example:5432/vigil
  vigilctl --server 127.0.0.1:7470 incidents tail
  vigil-server ca init /etc/vigil/pki --host vigil.example,10.0.0.5
  vigil-server --listen 0.0.0.0:7470 --tls-cert /etc/vigil/pki/server.pem \
    --tls-key /etc/vigil/pki/server-key.pem --client-ca /etc/vigil/pki/ca.pem \
    --tokens /etc/vigil/tokens.yaml
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the program; it returns the exit status: 0 after a clean stop, 1
// when the server could not start or failed, 2 for a bad command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "ca" {
		return caCommand(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("vigil-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", grpcserver.DefaultAddr, "")
	db := fs.String("db", DefaultDB, "")
	logLevel := fs.String("log-level", "info", "")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "")
	metricsAddr := fs.String("metrics", metrics.DefaultAddr, "")
	exportOCSF := fs.String("export-ocsf", "", "")
	exportWebhook := fs.String("export-webhook", "", "")
	consoleAddr := fs.String("console", console.DefaultAddr, "")
	tlsCert := fs.String("tls-cert", "", "")
	tlsKey := fs.String("tls-key", "", "")
	clientCA := fs.String("client-ca", "", "")
	tokens := fs.String("tokens", "", "")
	agentRate := fs.Float64("agent-rate", 0, "")
	enrollCA := fs.String("enroll-ca", "", "")
	enrollTokens := fs.String("enroll-tokens", "", "")
	showVersion := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return usageError(stderr, err.Error())
	}
	if fs.NArg() > 0 {
		return usageError(stderr, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if *showVersion {
		fmt.Fprintln(stdout, "vigil-server", version.Version)
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil || !validLevel(*logLevel) {
		return usageError(stderr, fmt.Sprintf("--log-level %q: want debug, info, warn or error", *logLevel))
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return usageError(stderr, "--tls-cert and --tls-key go together")
	}
	if *clientCA != "" && *tlsCert == "" {
		return usageError(stderr, "--client-ca needs --tls-cert and --tls-key")
	}
	if *enrollCA != "" && *tlsCert == "" {
		return usageError(stderr, "--enroll-ca needs --tls-cert and --tls-key")
	}
	if *enrollTokens != "" && *enrollCA == "" {
		return usageError(stderr, "--enroll-tokens needs --enroll-ca")
	}
	if *agentRate < 0 {
		return usageError(stderr, fmt.Sprintf("--agent-rate %v is negative", *agentRate))
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cfg := app.Config{Listen: *listen, DBPath: *db, Logger: log}
	cfg.MetricsListen, cfg.ExportOCSF, cfg.ExportWebhook = *metricsAddr, *exportOCSF, *exportWebhook
	cfg.ConsoleListen = *consoleAddr
	cfg.TLSCert, cfg.TLSKey, cfg.ClientCA = *tlsCert, *tlsKey, *clientCA
	cfg.TokensFile, cfg.AgentRate = *tokens, *agentRate
	cfg.EnrollCA, cfg.EnrollTokens = *enrollCA, *enrollTokens
	srv, err := app.Start(cfg)
	if err != nil {
		log.Error("vigil-server cannot start", "error", err)
		return 1
	}
	log.Info("vigil-server started", "listen", srv.Addr(), "db", store.RedactDSN(*db))
	if a := srv.MetricsAddr(); a != "" {
		log.Info("metrics served", "url", "http://"+a+"/metrics")
	}
	if a := srv.ConsoleAddr(); a != "" {
		log.Info("console served", "url", "http://"+a+"/")
	}
	if *tlsCert != "" {
		log.Info("serving TLS", "agent_certificates_required", *clientCA != "" || *enrollCA != "")
	}
	if *enrollCA != "" {
		log.Info("agents may enroll", "ca", *enrollCA, "tokens", cmp.Or(*enrollTokens, filepath.Join(*enrollCA, enroll.TokensFile)))
	}
	if *tokens == "" {
		log.Info("clients are not authenticated (no --tokens)")
	} else if *tlsCert == "" {
		log.Warn("bearer tokens travel in plaintext without --tls-cert")
	}
	if *exportOCSF != "" {
		log.Info("exporting incidents as OCSF", "file", *exportOCSF)
	}
	if *exportWebhook != "" {
		u, _ := ocsf.ParseWebhookURL(*exportWebhook) // Start checked it
		log.Info("exporting incidents as OCSF", "webhook", u.Redacted())
	}

	code := 0
	select {
	case <-ctx.Done():
		log.Info("vigil-server stopping", "timeout", *shutdownTimeout)
	case err := <-srv.Served():
		log.Error("vigil-server stopped serving", "error", err)
		code = 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("vigil-server shutdown", "error", err)
	}
	log.Info("vigil-server stopped")
	return code
}

// validLevel reports whether s is one of the four level names.
func validLevel(s string) bool {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

// usageError reports a bad command line and returns exit status 2.
func usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "vigil-server: %s\nRun 'vigil-server --help' for usage.\n", msg)
	return 2
}
