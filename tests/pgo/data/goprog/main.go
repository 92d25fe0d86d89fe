// burn: a tiny Go program that spends CPU in a few named functions and writes a CPU profile.
// Used to make the test fixtures in tests/pgo/data (see README.md there).
package main

import (
	"crypto/sha256"
	"flag"
	"log"
	"os"
	"runtime/pprof"
	"sort"
	"time"
)

var sink uint64

//go:noinline
func hashLoop(d time.Duration) {
	buf := make([]byte, 4096)
	for end := time.Now().Add(d); time.Now().Before(end); {
		sum := sha256.Sum256(buf)
		buf[0] = sum[0]
		sink += uint64(sum[1])
	}
}

//go:noinline
func sortLoop(d time.Duration) {
	xs := make([]int, 20000)
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := range xs {
			xs[i] = (i * 7919) % 20011
		}
		sort.Ints(xs)
		sink += uint64(xs[0])
	}
}

//go:noinline
func fibonacci(n int) int {
	if n < 2 {
		return n
	}
	return fibonacci(n-1) + fibonacci(n-2)
}

//go:noinline
func fibLoop(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		sink += uint64(fibonacci(24))
	}
}

func main() {
	out := flag.String("o", "cpu.pb.gz", "profile output")
	scale := flag.Duration("d", 400*time.Millisecond, "time unit per function")
	flag.Parse()
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Fatal(err)
	}
	hashLoop(3 * *scale)
	sortLoop(2 * *scale)
	fibLoop(*scale)
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
