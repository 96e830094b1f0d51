//go:build !linux

package main

import "errors"

const defaultReader = "gorilla"

func (f *fleet) startEpoll() error {
	return errors.New("-reader epoll: Linux only; use -reader gorilla")
}
