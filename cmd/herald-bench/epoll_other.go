//go:build !linux

package main

import "errors"

const defaultReader = "gorilla"

type rawReaders struct{}

func (f *fleet) startEpoll() error {
	return errors.New(`the epoll reader is Linux-only; use -reader gorilla`)
}

func (f *fleet) stopRaw() {}
