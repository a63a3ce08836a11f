// Command spdy-interop drives the Rust spdy3 crate with real Go SPDY implementations:
// github.com/moby/spdystream (the library under kube-apiserver, kubectl and the kubelet) and
// k8s.io/client-go's SPDY remotecommand executor (what `kubectl exec` and kube-apiserver use).
//
//	spdy-interop echo ADDR       spdystream client against a Rust echo server (raw SPDY over TCP)
//	spdy-interop exec URL [PROTO] client-go remotecommand exec against a Rust server (HTTP
//	                             upgrade), offering PROTO only (default: all, v5 first)
//	spdy-interop serve           spdystream echo server; prints "LISTENING host:port"
//
// Each client mode prints "PASS <name>" per check and exits non-zero on the first failure.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/moby/spdystream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: spdy-interop echo ADDR | exec URL | serve")
	}
	var err error
	switch os.Args[1] {
	case "echo":
		err = runEcho(os.Args[2])
	case "exec":
		proto := ""
		if len(os.Args) > 3 {
			proto = os.Args[3]
		}
		err = runExec(os.Args[2], proto)
	case "serve":
		err = runServe()
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "FAIL:", msg)
	os.Exit(1)
}

func random(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// runEcho opens several streams at once, each sending more than the 64 KiB default window, and
// expects every byte back followed by FIN.
func runEcho(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	sc, err := spdystream.NewConnection(conn, false)
	if err != nil {
		return err
	}
	go sc.Serve(spdystream.NoOpStreamHandler)
	defer sc.Close()

	if _, err := sc.Ping(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	fmt.Println("PASS ping")

	sizes := []int{0, 1, 100_000, 1 << 20}
	var wg sync.WaitGroup
	errs := make(chan error, len(sizes))
	for i, size := range sizes {
		wg.Add(1)
		go func(i, size int) {
			defer wg.Done()
			errs <- echoOne(sc, i, size)
		}(i, size)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		if e != nil {
			return e
		}
	}
	fmt.Println("PASS echo-concurrent")
	return nil
}

func echoOne(sc *spdystream.Connection, i, size int) error {
	h := http.Header{}
	h.Set("streamtype", "echo")
	h.Set("x-index", fmt.Sprint(i))
	s, err := sc.CreateStream(h, nil, false)
	if err != nil {
		return err
	}
	if err := s.WaitTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("stream %d: no SYN_REPLY: %w", i, err)
	}
	if got := s.Headers().Get("x-echo"); got != "yes" {
		// Headers() are ours; the reply headers are not exposed by spdystream, so nothing to check.
		_ = got
	}
	payload := random(size)
	done := make(chan error, 1)
	var got bytes.Buffer
	go func() {
		_, err := io.Copy(&got, s)
		done <- err
	}()
	for off := 0; off < len(payload); off += 32 << 10 {
		end := min(off+32<<10, len(payload))
		if _, err := s.Write(payload[off:end]); err != nil {
			return fmt.Errorf("stream %d write: %w", i, err)
		}
	}
	if err := s.Close(); err != nil { // FIN
		return err
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("stream %d read: %w", i, err)
		}
	case <-time.After(20 * time.Second):
		return fmt.Errorf("stream %d: timed out after %d of %d bytes", i, got.Len(), size)
	}
	if !bytes.Equal(got.Bytes(), payload) {
		return fmt.Errorf("stream %d: echoed %d bytes, sent %d (or content differs)", i, got.Len(), size)
	}
	return nil
}

// runExec speaks to a Rust server emulating the kubelet's /exec endpoint the way kube-apiserver
// and kubectl do: HTTP upgrade to SPDY/3.1, v5/v4 channel protocols, error channel status.
func runExec(base, proto string) error {
	cfg := &rest.Config{Host: base}
	executor := func(u *url.URL) (remotecommand.Executor, error) {
		if proto == "" {
			return remotecommand.NewSPDYExecutor(cfg, "POST", u)
		}
		transport, upgrader, err := spdy.RoundTripperFor(cfg)
		if err != nil {
			return nil, err
		}
		return remotecommand.NewSPDYExecutorForProtocols(transport, upgrader, "POST", u, proto)
	}
	run := func(command string, stdin []byte, tty bool) (string, string, error) {
		u, err := url.Parse(base + "/exec/ns/pod/c")
		if err != nil {
			return "", "", err
		}
		q := url.Values{}
		q.Set("command", command)
		q.Set("stdin", "true")
		q.Set("stdout", "true")
		if tty {
			q.Set("tty", "true")
		} else {
			q.Set("stderr", "true")
		}
		u.RawQuery = q.Encode()
		ex, err := executor(u)
		if err != nil {
			return "", "", err
		}
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		opts := remotecommand.StreamOptions{Stdin: bytes.NewReader(stdin), Stdout: &out, Tty: tty}
		if tty {
			opts.TerminalSizeQueue = &oneSize{size: &remotecommand.TerminalSize{Width: 132, Height: 43}}
		} else {
			opts.Stderr = &errOut
		}
		err = ex.StreamWithContext(ctx, opts)
		return out.String(), errOut.String(), err
	}

	in := random(512 << 10)
	out, errOut, err := run("cat", in, false)
	if err != nil {
		return fmt.Errorf("exec cat: %w", err)
	}
	if out != string(in) {
		return fmt.Errorf("exec cat: stdout has %d bytes, stdin had %d (or content differs)", len(out), len(in))
	}
	if errOut != "cat: done\n" {
		return fmt.Errorf("exec cat: stderr %q", errOut)
	}
	fmt.Println("PASS exec-cat")

	_, _, err = run("exit3", []byte("ignored"), false)
	var code exec.CodeExitError
	if !errors.As(err, &code) || code.Code != 3 {
		return fmt.Errorf("exec exit3: want exit code 3, got %v", err)
	}
	fmt.Println("PASS exec-exit-code")

	// TTY: five streams' worth of setup (error, stdin, stdout, resize); the server echoes the
	// first resize event to stdout.
	out, _, err = run("resize", nil, true)
	if err != nil {
		return fmt.Errorf("exec resize: %w", err)
	}
	if out != "{\"Width\":132,\"Height\":43}\n" {
		return fmt.Errorf("exec resize: stdout %q", out)
	}
	fmt.Println("PASS exec-tty-resize")
	return nil
}

// oneSize reports one terminal size, then ends the resize stream.
type oneSize struct {
	mu   sync.Mutex
	size *remotecommand.TerminalSize
}

func (q *oneSize) Next() *remotecommand.TerminalSize {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.size
	q.size = nil
	return s
}

// runServe is a spdystream server that echoes every stream, for the Rust client side.
func runServe() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println("LISTENING", ln.Addr().String())
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			sc, err := spdystream.NewConnection(conn, true)
			if err != nil {
				fmt.Fprintln(os.Stderr, "conn:", err)
				return
			}
			sc.Serve(func(s *spdystream.Stream) {
				reply := http.Header{}
				reply.Set("x-echo", s.Headers().Get("streamtype"))
				if err := s.SendReply(reply, false); err != nil {
					return
				}
				go func() {
					_, _ = io.Copy(s, s)
					_ = s.Close()
				}()
			})
		}()
	}
}
