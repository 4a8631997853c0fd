package manifest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
)

// Problem is what is wrong with one file of a bundle.
type Problem string

// Problems FileError reports.
const (
	Missing    Problem = "missing"            // listed but absent
	Extra      Problem = "not listed"         // present but not in the manifest
	NotRegular Problem = "not a regular file" // a symlink, device, ...
	WrongSize  Problem = "size mismatch"      // size differs from nbytes
	Mismatch   Problem = "integrity mismatch" // SHA-384 differs from integrity
	Invalid    Problem = "invalid manifest"   // manifest.json does not decode
	Unreadable Problem = "unreadable"         // an I/O error
)

// FileError reports one file of a bundle that fails verification.
type FileError struct {
	Path    string  // bundle-relative, slash-separated
	Problem Problem //
	Detail  string  // expected and found, or the underlying error
}

func (e *FileError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("verify: %s: %s", e.Path, e.Problem)
	}
	return fmt.Sprintf("verify: %s: %s: %s", e.Path, e.Problem, e.Detail)
}

// Verify checks a signed bundle directory: manifest.sig is a DSSE envelope
// with a valid signature by pub over the exact bytes of manifest.json, the
// manifest decodes strictly, and CheckFiles passes. Failures are
// *SignatureError or *FileError values (several joined with errors.Join,
// sorted by path), each naming the file at fault.
func Verify(dir string, pub *PublicKey) error {
	mb, err := readBounded(dir, ManifestFile, MaxManifestBytes)
	if err != nil {
		return err
	}
	sb, err := readBounded(dir, SignatureFile, MaxEnvelopeBytes)
	if err != nil {
		return err
	}
	if err := VerifySignature(mb, sb, pub); err != nil {
		return err
	}
	m, err := Decode(mb)
	if err != nil {
		return &FileError{Path: ManifestFile, Problem: Invalid, Detail: err.Error()}
	}
	return CheckFiles(dir, m)
}

// ReadManifest reads and strictly decodes dir/manifest.json, returning the
// manifest and its exact bytes. Errors are *FileError.
func ReadManifest(dir string) (*Manifest, []byte, error) {
	mb, err := readBounded(dir, ManifestFile, MaxManifestBytes)
	if err != nil {
		return nil, nil, err
	}
	m, err := Decode(mb)
	if err != nil {
		return nil, nil, &FileError{Path: ManifestFile, Problem: Invalid, Detail: err.Error()}
	}
	return m, mb, nil
}

func readBounded(dir, name string, limit int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &FileError{Path: name, Problem: Missing}
	}
	if err != nil {
		return nil, &FileError{Path: name, Problem: Unreadable, Detail: err.Error()}
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, &FileError{Path: name, Problem: NotRegular}
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &FileError{Path: name, Problem: Unreadable, Detail: err.Error()}
	}
	if int64(len(b)) > limit {
		return nil, &FileError{Path: name, Problem: WrongSize, Detail: fmt.Sprintf("larger than the limit of %d bytes", limit)}
	}
	return b, nil
}

// CheckFiles checks the files of dir against m: every listed file exists
// as a regular file with the listed size and SHA-384; nothing else is in
// dir but manifest.json and manifest.sig (directories holding listed files
// are fine; symlinks are not). Files are hashed in parallel. All problems
// are returned, as *FileError joined with errors.Join, sorted by path.
func CheckFiles(dir string, m *Manifest) error {
	listed := make(map[string]*File, len(m.Files))
	for i := range m.Files {
		listed[m.Files[i].Path] = &m.Files[i]
	}
	var problems []*FileError
	var toHash []*File
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			rel, _ := filepath.Rel(dir, p)
			problems = append(problems, &FileError{Path: filepath.ToSlash(rel), Problem: Unreadable, Detail: err.Error()})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if p == dir || d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == ManifestFile || rel == SignatureFile {
			if !d.Type().IsRegular() {
				problems = append(problems, &FileError{Path: rel, Problem: NotRegular})
			}
			return nil
		}
		f, ok := listed[rel]
		switch {
		case !ok:
			problems = append(problems, &FileError{Path: rel, Problem: Extra})
		case !d.Type().IsRegular():
			seen[rel] = true
			problems = append(problems, &FileError{Path: rel, Problem: NotRegular})
		default:
			seen[rel] = true
			toHash = append(toHash, f)
		}
		return nil
	})
	if err != nil {
		return &FileError{Path: ".", Problem: Unreadable, Detail: err.Error()}
	}
	for _, f := range m.Files {
		if !seen[f.Path] {
			problems = append(problems, &FileError{Path: f.Path, Problem: Missing})
		}
	}

	results := make([]*FileError, len(toHash))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), max(len(toHash), 1)) {
		wg.Go(func() {
			for i := range next {
				results[i] = checkFile(dir, toHash[i])
			}
		})
	}
	for i := range toHash {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, r := range results {
		if r != nil {
			problems = append(problems, r)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Slice(problems, func(i, j int) bool { return problems[i].Path < problems[j].Path })
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}

func checkFile(dir string, f *File) *FileError {
	fh, err := os.Open(filepath.Join(dir, filepath.FromSlash(f.Path)))
	if err != nil {
		return &FileError{Path: f.Path, Problem: Unreadable, Detail: err.Error()}
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return &FileError{Path: f.Path, Problem: Unreadable, Detail: err.Error()}
	}
	if st.Size() != f.NBytes {
		return &FileError{Path: f.Path, Problem: WrongSize, Detail: fmt.Sprintf("%d bytes, want %d", st.Size(), f.NBytes)}
	}
	sum, n, err := hashReader(io.LimitReader(fh, f.NBytes+1))
	if err != nil {
		return &FileError{Path: f.Path, Problem: Unreadable, Detail: err.Error()}
	}
	if n != f.NBytes {
		return &FileError{Path: f.Path, Problem: WrongSize, Detail: fmt.Sprintf("%d bytes, want %d", n, f.NBytes)}
	}
	if got := Integrity(sum); got != f.Integrity {
		return &FileError{Path: f.Path, Problem: Mismatch, Detail: fmt.Sprintf("got %s, want %s", got, f.Integrity)}
	}
	return nil
}
