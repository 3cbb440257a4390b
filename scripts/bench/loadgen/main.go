// Command loadgen generates the workloads of Vigil's benchmarks:
//
//	loadgen files N PATH   N times: open PATH, read it, close it
//	loadgen connect N      N TCP connections to a listener on 127.0.0.1, each reset at once
//
// It prints nothing; the benchmark scripts time it.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: loadgen files N PATH | loadgen connect N")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 1 {
		return fmt.Errorf("count %q: want a positive number", args[1])
	}
	switch args[0] {
	case "files":
		if len(args) != 3 {
			return fmt.Errorf("usage: loadgen files N PATH")
		}
		return files(n, args[2])
	case "connect":
		return connects(n)
	default:
		return fmt.Errorf("unknown workload %q (want files or connect)", args[0])
	}
}

func files(n int, path string) error {
	buf := make([]byte, 4096)
	for range n {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		if _, err := f.Read(buf); err != nil && err != io.EOF {
			return err
		}
		f.Close()
	}
	return nil
}

func connects(n int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		// Reset instead of FIN: no TIME_WAIT socket is left behind, so
		// 20,000 connects neither exhaust ephemeral ports nor slow down the
		// next run (which made timings bimodal).
		if err := c.(*net.TCPConn).SetLinger(0); err != nil {
			return err
		}
		c.Close()
	}
	return nil
}
