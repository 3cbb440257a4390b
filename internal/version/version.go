// Package version is the version of Vigil's programs: vigil-agent,
// vigil-server and vigilctl print it with --version, and the agent reports
// it to the server. Release builds set it with
// -ldflags "-X github.com/vigil-sensor/vigil/internal/version.Version=...".
package version

// Version is the version of this build.
var Version = "0.1.0-dev"
