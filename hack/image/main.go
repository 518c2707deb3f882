// Command image builds a container image without a container engine: static binaries on an
// empty base, plus what the Dockerfile's distroless/static:nonroot base gives them (CA
// certificates, /etc/passwd and /etc/group with the nonroot user 65532, a writable /tmp
// and a home directory), written as an OCI image-layout archive that `ctr images import`
// and `docker load` read. The output is reproducible: every file time is the epoch given by
// SOURCE_DATE_EPOCH (0 when unset) and the layer's entries are sorted.
//
//	image -tag docker.io/jobtoken/manager:dev -out bin/images/manager.tar -file bin/linux/manager:/manager -entrypoint /manager
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The user the Dockerfile's base runs as (distroless "nonroot").
const nonrootUID = 65532

type fileFlags []string

func (f *fileFlags) String() string     { return strings.Join(*f, ",") }
func (f *fileFlags) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run() error {
	var files fileFlags
	tag := flag.String("tag", "", "image name with tag, e.g. docker.io/jobtoken/manager:dev (required)")
	out := flag.String("out", "", "OCI archive to write (required)")
	entrypoint := flag.String("entrypoint", "", "entrypoint (required)")
	caFile := flag.String("ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "CA bundle copied to /etc/ssl/certs/ca-certificates.crt; empty leaves it out")
	user := flag.String("user", fmt.Sprintf("%d:%d", nonrootUID, nonrootUID), "user:group the image runs as")
	flag.Var(&files, "file", "`SRC:DEST` host file copied into the image, mode 0755 (repeatable)")
	flag.Parse()
	if *tag == "" || *out == "" || *entrypoint == "" || len(files) == 0 {
		flag.Usage()
		return errors.New("-tag, -out, -entrypoint and at least one -file are required")
	}
	epoch := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		epoch = time.Unix(n, 0).UTC()
	}

	entries := map[string]entry{
		"etc/":           {dir: true, mode: 0o755},
		"etc/ssl/":       {dir: true, mode: 0o755},
		"etc/ssl/certs/": {dir: true, mode: 0o755},
		"tmp/":           {dir: true, mode: 0o1777},
		"home/":          {dir: true, mode: 0o755},
		"home/nonroot/":  {dir: true, mode: 0o700, uid: nonrootUID},
		"etc/passwd": {mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			fmt.Sprintf("nonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonrootUID, nonrootUID))},
		"etc/group":         {mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\n" + fmt.Sprintf("nonroot:x:%d:\n", nonrootUID))},
		"etc/nsswitch.conf": {mode: 0o644, data: []byte("hosts: files dns\n")},
	}
	if *caFile != "" {
		b, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("CA certificates (install Debian's ca-certificates, or pass -ca-certificates=''): %w", err)
		}
		entries["etc/ssl/certs/ca-certificates.crt"] = entry{mode: 0o644, data: b}
	}
	for _, f := range files {
		src, dest, ok := strings.Cut(f, ":")
		if !ok || !strings.HasPrefix(dest, "/") {
			return fmt.Errorf("-file %q: want SRC:/DEST", f)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		dest = strings.TrimPrefix(dest, "/")
		for d := filepath.Dir(dest); d != "."; d = filepath.Dir(d) {
			if _, ok := entries[d+"/"]; !ok {
				entries[d+"/"] = entry{dir: true, mode: 0o755}
			}
		}
		entries[dest] = entry{mode: 0o755, data: b}
	}

	layerTar, err := writeTar(entries, epoch)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = []string{*entrypoint}
	cfg.Config.User = *user
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return err
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: epoch})
	if err != nil {
		return err
	}
	return writeArchive(img, normalizeName(*tag), *out, epoch)
}

// normalizeName gives the full name containerd stores an image under, which is what the
// kubelet asks for: docker.io/ for a name without a registry, library/ for a bare one.
func normalizeName(tag string) string {
	first, rest, found := strings.Cut(tag, "/")
	if !found {
		return "docker.io/library/" + tag
	}
	if strings.ContainsAny(first, ".:") || first == "localhost" {
		return tag
	}
	return "docker.io/" + first + "/" + rest
}

type entry struct {
	dir  bool
	mode int64
	uid  int
	data []byte
}

// writeTar writes the layer with its entries sorted, so that equal inputs give equal digests.
func writeTar(entries map[string]entry, epoch time.Time) ([]byte, error) {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		h := &tar.Header{Name: n, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: epoch, Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !e.dir {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArchive writes img as an OCI image layout in a tar archive. The index entry is
// annotated with the full name (io.containerd.image.name, read by ctr images import) and
// the tag (org.opencontainers.image.ref.name, the OCI convention).
func writeArchive(img v1.Image, tag, out string, epoch time.Time) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), ".image-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	ref := tag
	if i := strings.LastIndex(tag, ":"); i > strings.LastIndex(tag, "/") {
		ref = tag[i+1:]
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          tag,
		"org.opencontainers.image.ref.name": ref,
	}), layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})); err != nil {
		return err
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	werr := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: epoch, Mode: 0o644, Format: tar.FormatPAX}
		if info.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			return tw.WriteHeader(h)
		}
		h.Typeflag, h.Size = tar.TypeReg, info.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer func() { _ = src.Close() }()
		_, err = io.Copy(tw, src)
		return err
	})
	if werr == nil {
		werr = tw.Close()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return werr
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s %s\n", out, tag, d)
	return nil
}
