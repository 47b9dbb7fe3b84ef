//go:build !linux

package agent

import "syscall"

// dieWithParent is Linux's parent-death signal; elsewhere a machine's
// teardown ends its processes by their labels (KillLocalMachine).
func dieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
