package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/export"
)

// fat32Max is the largest file FAT32 holds: --split 4G means it.
const fat32Max = 4<<30 - 1

// parseSize reads --split: bytes, or a number with K, M or G (KiB, MiB,
// GiB). 4G is FAT32's largest file, 4 GiB less one byte.
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	num, mult := strings.ToUpper(s), int64(1)
	for suffix, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if t, ok := strings.CutSuffix(num, suffix); ok {
			num, mult = t, m
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (bytes, or a number with K, M or G)", s)
	}
	if n*mult == 4<<30 {
		return fat32Max, nil
	}
	return n * mult, nil
}

// writeBundle writes the bundle to out, or with split > 0 to out.000,
// out.001, …: every part to a temporary file first, the parts after the
// first renamed into place once all are written, the first (which lists
// them) last, so an interrupted export leaves no bundle that looks whole.
func writeBundle(ctx context.Context, out string, split int64, o export.Options) (*export.Result, error) {
	var res *export.Result
	if split == 0 {
		err := writeFileAtomic(out, func(f *os.File) (err error) {
			res, err = export.Write(ctx, f, o)
			return err
		})
		return res, err
	}
	first := out + bundle.FirstPartSuffix
	var temps []string
	defer func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}()
	o.Split = split
	o.Part = func(n int) (io.WriteCloser, error) {
		f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(bundle.PartPath(first, n))+".part*")
		if err != nil {
			return nil, err
		}
		temps = append(temps, f.Name())
		return syncCloser{f}, nil
	}
	err := writeFileAtomic(first, func(f *os.File) (err error) {
		if res, err = export.Write(ctx, f, o); err != nil {
			return err
		}
		for i, t := range temps {
			if err := os.Chmod(t, 0o644); err != nil {
				return err
			}
			if err := os.Rename(t, bundle.PartPath(first, i+1)); err != nil {
				return err
			}
		}
		temps = nil
		return nil
	})
	return res, err
}

// syncCloser flushes a part to disk before closing it.
type syncCloser struct{ *os.File }

func (s syncCloser) Close() error {
	if err := s.File.Sync(); err != nil {
		s.File.Close()
		return err
	}
	return s.File.Close()
}
