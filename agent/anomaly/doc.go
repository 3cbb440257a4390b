// Package anomaly holds the agent's local anomaly scorers: models that learn
// what is normal on this host and say, in words, what is not.
//
//   - Baseline learns, per executable, which programs it starts, which files
//     it touches, where it connects and as which user it runs, and reports a
//     Finding when, after a learning period, an executable does something it
//     has not done before (or not for a long time).
//   - Logins counts authentication failures and successes per source and per
//     user in a sliding window, and learns from which sources and at which
//     hours each user logs in.
//   - Flows counts distinct ports and hosts per process and per inbound
//     source in a sliding window (scans), detects regular connections from
//     one executable to one destination (beacons) and reports connections
//     that send far more than the executable usually sends (rare-volume).
//
// # Determinism
//
// Every scorer takes its times from the events it is given and never reads
// the clock, so that a test or a replay of recorded events gives exactly the
// same results. Learning periods start at the first event a scorer sees.
// Events that arrive slightly out of order are tolerated: decay never runs
// backwards and windows are pruned against the event being observed.
//
// # Concurrency
//
// None of the types is safe for concurrent use. The agent's pipeline takes
// one event at a time under its lock and calls the scorers from there; a
// caller that saves state from another goroutine (a timer) must take the
// same lock.
//
// # Memory
//
// Every table is bounded; the bounds are fields of the options with the
// defaults named in each type's documentation, and when a table is full the
// least-weighted or least-recently-seen entry is dropped. Ties are broken by
// key order, so eviction is deterministic too. With the defaults the tables
// stay well below the agent's 64 MB budget (see BaselineOptions,
// LoginOptions and FlowOptions for per-table estimates).
//
// # Persistence
//
// Baseline, Logins and Flows save what they learned (not their sliding
// windows) to versioned JSON files, written atomically through a temporary
// file and a rename. The daemon keeps them in its state directory under the
// names BaselineFile, LoginsFile and FlowsFile. Load of a missing file
// returns an error that matches fs.ErrNotExist; a damaged one returns
// ErrCorrupt and one from a newer agent ErrVersion. In every case the
// scorer is left as it was, so the caller can log the error and go on with
// a fresh one.
package anomaly
