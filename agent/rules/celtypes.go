package rules

import (
	"fmt"
	"reflect"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// The CEL object types are served by a hand-written provider rather than by
// ext.NativeTypes: both type-check field names, but NativeTypes reads every
// field through reflect and a map lookup, while here each field has a typed
// getter, and the objects are passed to CEL without copying
// (BenchmarkFieldAccess compares the two).

// field is one CEL field of a Go struct T.
type field struct {
	name string
	typ  *types.Type
	get  func(obj any) ref.Val
}

// objType is a Go struct exposed to CEL as an object type.
type objType struct {
	name   string
	typ    *types.Type
	fields map[string]*types.FieldType
	order  []string
	goType reflect.Type
}

func newObjType[T any](name string, fields ...field) *objType {
	t := &objType{
		name:   name,
		typ:    types.NewObjectType(name),
		fields: make(map[string]*types.FieldType, len(fields)),
		goType: reflect.TypeFor[T](),
	}
	for _, f := range fields {
		get := f.get
		t.fields[f.name] = &types.FieldType{
			Type: f.typ,
			IsSet: func(obj any) bool {
				v := get(obj)
				z, ok := v.(interface{ IsZeroValue() bool })
				return !ok || !z.IsZeroValue()
			},
			GetFrom: func(obj any) (any, error) { return get(obj), nil },
		}
		t.order = append(t.order, f.name)
	}
	return t
}

type integer interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

func strF[T any](name string, f func(*T) string) field {
	return field{name, types.StringType, func(o any) ref.Val { return types.String(f(o.(*T))) }}
}

func intF[T any, N integer](name string, f func(*T) N) field {
	return field{name, types.IntType, func(o any) ref.Val { return types.Int(f(o.(*T))) }}
}

func boolF[T any](name string, f func(*T) bool) field {
	return field{name, types.BoolType, func(o any) ref.Val { return types.Bool(f(o.(*T))) }}
}

// The Process fields whose CEL values are cached in Process.cel.
const (
	celName = iota
	celComm
	celExe
	celCmdline
	celArgs
	celCached
)

// cachedF is a Process field whose CEL value is made once per Process, on
// first read, and kept in slot i of Process.cel. Input.Fill makes new
// Process values for every event, so the cache never outlives the fields.
func cachedF(name string, t *types.Type, i int, f func(*Process) ref.Val) field {
	return field{name, t, func(o any) ref.Val {
		p := o.(*Process)
		if v := p.cel[i]; v != nil {
			return v
		}
		v := f(p)
		p.cel[i] = v
		return v
	}}
}

func cachedStrF(name string, i int, f func(*Process) string) field {
	return cachedF(name, types.StringType, i, func(p *Process) ref.Val { return types.String(f(p)) })
}

func listF[T any](name string, f func(*T) []string) field {
	return field{name, types.NewListType(types.StringType), func(o any) ref.Val {
		return types.NewStringList(types.DefaultTypeAdapter, f(o.(*T)))
	}}
}

// The CEL type names of the Input parts.
const (
	processTypeName = "vigil.Process"
	fileTypeName    = "vigil.File"
	credTypeName    = "vigil.Cred"
	ptraceTypeName  = "vigil.Ptrace"
	moduleTypeName  = "vigil.Module"
	memfdTypeName   = "vigil.Memfd"
	mountTypeName   = "vigil.Mount"
	bpfTypeName     = "vigil.BPF"
	killTypeName    = "vigil.Kill"
	loginTypeName   = "vigil.Login"
	networkTypeName = "vigil.Network"
	userTypeName    = "vigil.User"
)

var objTypes = map[string]*objType{}

// objTypeOf maps a Go pointer type to its CEL type, for obj.Type.
var objTypeOf = map[reflect.Type]*objType{}

func register(t *objType) {
	objTypes[t.name] = t
	objTypeOf[reflect.PointerTo(t.goType)] = t
}

func init() {
	register(newObjType[Process](processTypeName,
		intF("pid", func(p *Process) uint32 { return p.PID }),
		intF("ppid", func(p *Process) uint32 { return p.PPID }),
		intF("start_time", func(p *Process) uint64 { return p.StartTime }),
		intF("uid", func(p *Process) uint32 { return p.UID }),
		intF("euid", func(p *Process) uint32 { return p.EUID }),
		intF("gid", func(p *Process) uint32 { return p.GID }),
		strF("user", func(p *Process) string { return p.User }),
		cachedStrF("exe", celExe, func(p *Process) string { return p.Exe }),
		cachedStrF("name", celName, func(p *Process) string { return p.Name }),
		cachedStrF("comm", celComm, func(p *Process) string { return p.Comm }),
		cachedF("args", types.NewListType(types.StringType), celArgs, func(p *Process) ref.Val { return constList(p.Args) }),
		cachedStrF("cmdline", celCmdline, func(p *Process) string { return p.Cmdline }),
		strF("cwd", func(p *Process) string { return p.Cwd }),
		strF("filename", func(p *Process) string { return p.Filename }),
		strF("script", func(p *Process) string { return p.Script }),
		boolF("memfd", func(p *Process) bool { return p.Memfd }),
		boolF("deleted", func(p *Process) bool { return p.Deleted }),
		intF("cgroup_id", func(p *Process) uint64 { return p.CgroupID }),
		intF("login_uid", func(p *Process) uint32 { return p.LoginUID }),
		intF("session_id", func(p *Process) uint32 { return p.SessionID }),
		boolF("listening", func(p *Process) bool { return p.Listening() }),
	))
	register(newObjType[File](fileTypeName,
		strF("op", func(f *File) string { return f.Op }),
		strF("path", func(f *File) string { return f.Path }),
		strF("new_path", func(f *File) string { return f.NewPath }),
		intF("mode", func(f *File) uint32 { return f.Mode }),
		intF("flags", func(f *File) uint64 { return f.Flags }),
		intF("uid", func(f *File) uint32 { return f.UID }),
		intF("gid", func(f *File) uint32 { return f.GID }),
		boolF("read", func(f *File) bool { return f.Read }),
		boolF("write", func(f *File) bool { return f.Write }),
		boolF("create", func(f *File) bool { return f.Create }),
		boolF("truncate", func(f *File) bool { return f.Truncate }),
		intF("ret", func(f *File) int64 { return f.Ret }),
	))
	register(newObjType[Cred](credTypeName,
		strF("syscall", func(c *Cred) string { return c.Syscall }),
		intF("old_uid", func(c *Cred) uint32 { return c.OldUID }),
		intF("old_euid", func(c *Cred) uint32 { return c.OldEUID }),
		intF("old_gid", func(c *Cred) uint32 { return c.OldGID }),
		intF("old_egid", func(c *Cred) uint32 { return c.OldEGID }),
		intF("new_uid", func(c *Cred) uint32 { return c.NewUID }),
		intF("new_euid", func(c *Cred) uint32 { return c.NewEUID }),
		intF("new_gid", func(c *Cred) uint32 { return c.NewGID }),
		intF("new_egid", func(c *Cred) uint32 { return c.NewEGID }),
		intF("old_caps", func(c *Cred) uint64 { return c.OldCaps }),
		intF("new_caps", func(c *Cred) uint64 { return c.NewCaps }),
	))
	register(newObjType[Ptrace](ptraceTypeName,
		strF("request", func(p *Ptrace) string { return p.Request }),
		intF("target_pid", func(p *Ptrace) uint32 { return p.TargetPID }),
		strF("target_exe", func(p *Ptrace) string { return p.TargetExe }),
	))
	register(newObjType[Module](moduleTypeName,
		strF("op", func(m *Module) string { return m.Op }),
		strF("name", func(m *Module) string { return m.Name }),
		strF("path", func(m *Module) string { return m.Path }),
	))
	register(newObjType[Memfd](memfdTypeName,
		strF("name", func(m *Memfd) string { return m.Name }),
		intF("flags", func(m *Memfd) uint32 { return m.Flags }),
	))
	register(newObjType[Mount](mountTypeName,
		strF("op", func(m *Mount) string { return m.Op }),
		strF("source", func(m *Mount) string { return m.Source }),
		strF("target", func(m *Mount) string { return m.Target }),
		strF("fstype", func(m *Mount) string { return m.FSType }),
		intF("flags", func(m *Mount) uint64 { return m.Flags }),
	))
	register(newObjType[BPF](bpfTypeName,
		intF("prog_type", func(b *BPF) uint32 { return b.ProgType }),
		strF("prog_name", func(b *BPF) string { return b.ProgName }),
		intF("insn_count", func(b *BPF) uint32 { return b.InsnCount }),
	))
	register(newObjType[Kill](killTypeName,
		intF("target_pid", func(k *Kill) int32 { return k.TargetPID }),
		intF("signal", func(k *Kill) int32 { return k.Signal }),
		strF("target_exe", func(k *Kill) string { return k.TargetExe }),
	))
	register(newObjType[Login](loginTypeName,
		strF("op", func(l *Login) string { return l.Op }),
		strF("service", func(l *Login) string { return l.Service }),
		strF("user", func(l *Login) string { return l.User }),
		strF("remote_host", func(l *Login) string { return l.RemoteHost }),
		strF("remote_user", func(l *Login) string { return l.RemoteUser }),
		strF("tty", func(l *Login) string { return l.TTY }),
		intF("result", func(l *Login) int32 { return l.Result }),
		boolF("success", func(l *Login) bool { return l.Success }),
		intF("failures_from_source", func(l *Login) int { return l.FailuresFromSource }),
		intF("users_from_source", func(l *Login) int { return l.UsersFromSource }),
		intF("failures_for_user", func(l *Login) int { return l.FailuresForUser }),
		intF("sources_for_user", func(l *Login) int { return l.SourcesForUser }),
		intF("failures_before_success", func(l *Login) int { return l.FailuresBeforeSuccess }),
		boolF("new_source", func(l *Login) bool { return l.NewSource }),
		boolF("unusual_hour", func(l *Login) bool { return l.UnusualHour }),
		boolF("learning", func(l *Login) bool { return l.Learning }),
	))
	register(newObjType[Network](networkTypeName,
		strF("protocol", func(n *Network) string { return n.Protocol }),
		strF("direction", func(n *Network) string { return n.Direction }),
		strF("local_addr", func(n *Network) string { return n.LocalAddr }),
		intF("local_port", func(n *Network) uint16 { return n.LocalPort }),
		strF("remote_addr", func(n *Network) string { return n.RemoteAddr }),
		intF("remote_port", func(n *Network) uint16 { return n.RemotePort }),
		boolF("failed", func(n *Network) bool { return n.Failed }),
		intF("bytes_sent", func(n *Network) uint64 { return n.BytesSent }),
		intF("bytes_received", func(n *Network) uint64 { return n.BytesReceived }),
		intF("duration_ms", func(n *Network) int64 { return n.DurationMS }),
		strF("query", func(n *Network) string { return n.Query }),
		boolF("response", func(n *Network) bool { return n.Response }),
		intF("rcode", func(n *Network) uint8 { return n.RCode }),
		listF("answers", func(n *Network) []string { return n.Answers }),
		intF("ports_to_host", func(n *Network) int { return n.PortsToHost }),
		intF("hosts_on_port", func(n *Network) int { return n.HostsOnPort }),
		boolF("beacon", func(n *Network) bool { return n.Beacon }),
		intF("beacon_interval_ms", func(n *Network) int64 { return n.BeaconIntervalMS }),
	))
	register(newObjType[User](userTypeName,
		intF("uid", func(u *User) uint32 { return u.UID }),
		strF("name", func(u *User) string { return u.Name }),
	))
}

// obj is a pointer to one of the Input parts as a CEL value. A struct of
// one pointer is stored in an interface without an allocation.
type obj[T any] struct{ p *T }

// ConvertToNative implements ref.Val.
func (o obj[T]) ConvertToNative(t reflect.Type) (any, error) {
	switch t {
	case reflect.TypeFor[*T]():
		return o.p, nil
	case reflect.TypeFor[T]():
		return *o.p, nil
	}
	return nil, fmt.Errorf("cannot convert %T to %v", o.p, t)
}

// ConvertToType implements ref.Val.
func (o obj[T]) ConvertToType(t ref.Type) ref.Val {
	ot := o.Type()
	switch t {
	case types.TypeType:
		return ot.(ref.Val)
	case ot:
		return o
	}
	return types.NewErr("type conversion error from '%s' to '%s'", ot.TypeName(), t.TypeName())
}

// Equal implements ref.Val.
func (o obj[T]) Equal(other ref.Val) ref.Val {
	x, ok := other.(obj[T])
	if !ok {
		return types.False
	}
	if a, ok := any(o.p).(*Process); ok {
		// Compare the fields, not what reading them has cached.
		l, r := *a, *any(x.p).(*Process)
		l.cel, r.cel = [celCached]ref.Val{}, [celCached]ref.Val{}
		return types.Bool(reflect.DeepEqual(l, r))
	}
	return types.Bool(reflect.DeepEqual(*o.p, *x.p))
}

// Type implements ref.Val.
func (o obj[T]) Type() ref.Type { return objTypeOf[reflect.TypeFor[*T]()].typ }

// Value implements ref.Val.
func (o obj[T]) Value() any { return o.p }

// provider serves the object types and passes everything else to the
// standard registry.
type provider struct {
	*types.Registry
}

func newProvider() (*provider, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, fmt.Errorf("cel registry: %w", err)
	}
	return &provider{reg}, nil
}

// FindStructType implements types.Provider.
func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if t, ok := objTypes[name]; ok {
		return types.NewTypeTypeWithParam(t.typ), true
	}
	return p.Registry.FindStructType(name)
}

// FindStructFieldNames implements types.Provider.
func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if t, ok := objTypes[name]; ok {
		return t.order, true
	}
	return p.Registry.FindStructFieldNames(name)
}

// FindStructFieldType implements types.Provider.
func (p *provider) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	if t, ok := objTypes[name]; ok {
		f, ok := t.fields[fieldName]
		return f, ok
	}
	return p.Registry.FindStructFieldType(name, fieldName)
}

// NewValue implements types.Provider: rules read objects, they do not build them.
func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := objTypes[name]; ok {
		return types.NewErr("%s values cannot be constructed in a rule", name)
	}
	return p.Registry.NewValue(name, fields)
}

// activation resolves the CEL variables of one Input without a map.
type activation struct{ in *Input }

// ResolveName implements interpreter.Activation.
func (a activation) ResolveName(name string) (any, bool) {
	in := a.in
	switch name {
	case "kind":
		return types.String(in.Kind), true
	case "process":
		return obj[Process]{&in.Process}, true
	case "parent":
		return obj[Process]{&in.Parent}, true
	case "ancestors":
		vals := make([]ref.Val, len(in.Ancestors))
		for i := range in.Ancestors {
			vals[i] = obj[Process]{&in.Ancestors[i]}
		}
		return types.NewRefValList(types.DefaultTypeAdapter, vals), true
	case "file":
		return obj[File]{&in.File}, true
	case "cred":
		return obj[Cred]{&in.Cred}, true
	case "ptrace":
		return obj[Ptrace]{&in.Ptrace}, true
	case "module":
		return obj[Module]{&in.Module}, true
	case "memfd":
		return obj[Memfd]{&in.Memfd}, true
	case "mount":
		return obj[Mount]{&in.Mount}, true
	case "bpf":
		return obj[BPF]{&in.BPF}, true
	case "kill":
		return obj[Kill]{&in.Kill}, true
	case "login":
		return obj[Login]{&in.Login}, true
	case "network":
		return obj[Network]{&in.Network}, true
	case "user":
		return obj[User]{&in.User}, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a activation) Parent() interpreter.Activation { return nil }
