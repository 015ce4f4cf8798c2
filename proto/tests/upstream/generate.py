#!/usr/bin/env python3
"""Extracts the upstream parser test tables into errors.rs and entries.rs.

Run from this folder after putting the upstream files in /tmp/up (from `fetch`ed mirrors):
  git --git-dir=<prometheus/common> show d2417e2cbb82c4c81e4d28d55f354058169a9f08:expfmt/text_parse_test.go > /tmp/up/common/expfmt_text_parse_test.go
  git --git-dir=<prometheus/prometheus> show d15adb9ad7e5d9fbde3a9a8f30200593a5a14d86:model/textparse/promparse_test.go > /tmp/up/prom/promparse_test.go
  git --git-dir=<prometheus/prometheus> show d15adb9ad7e5d9fbde3a9a8f30200593a5a14d86:model/textparse/openmetricsparse_test.go > /tmp/up/prom/openmetricsparse_test.go
Go string literals are decoded to bytes and written as Rust byte strings.
"""
import re
def parse_go_string(s, i):
    """Parse a Go string literal starting at s[i]; return (bytes, end_index)."""
    q = s[i]
    if q == '`':
        j = s.index('`', i+1)
        return s[i+1:j].encode('utf-8'), j+1
    assert q == '"', s[i:i+40]
    out = bytearray(); j = i+1
    while True:
        c = s[j]
        if c == '"': return bytes(out), j+1
        if c == '\\':
            n = s[j+1]
            simple = {'n':b'\n','t':b'\t','\\':b'\\','"':b'"',"'":b"'",'r':b'\r','a':b'\a','b':b'\b','f':b'\f','v':b'\v'}
            if n in simple: out += simple[n]; j += 2; continue
            if n == 'x': out.append(int(s[j+2:j+4],16)); j += 4; continue
            if n == 'u': out += chr(int(s[j+2:j+6],16)).encode(); j += 6; continue
            if n == 'U': out += chr(int(s[j+2:j+10],16)).encode(); j += 10; continue
            if n in '01234567': out.append(int(s[j+1:j+4],8)); j += 4; continue
            raise Exception('escape '+n)
        out += c.encode('utf-8'); j += 1

def parse_concat(s, i):
    """A Go string expression: literals joined by +, possibly across lines."""
    val, j = parse_go_string(s, i)
    while True:
        m = re.match(r'\s*\+\s*', s[j:])
        if not m: return val, j
        k = j + m.end()
        if s[k] not in '"`': return val, j
        v2, j = parse_go_string(s, k)
        val += v2

def rust_bytes(b):
    out = []
    for c in b:
        if c == 0x22: out.append('\\"')
        elif c == 0x5c: out.append('\\\\')
        elif c == 0x0a: out.append('\\n')
        elif c == 0x09: out.append('\\t')
        elif 0x20 <= c < 0x7f: out.append(chr(c))
        else: out.append('\\x%02x' % c)
    return 'b"' + ''.join(out) + '"'

def matching(s, i, open_='{', close='}'):
    """Index after the bracket matching s[i], skipping string literals."""
    depth = 0; j = i
    while j < len(s):
        c = s[j]
        if c in '"`':
            _, j = parse_go_string(s, j); continue
        if c == '/' and s[j:j+2] == '//':
            j = s.index('\n', j); continue
        if c == open_: depth += 1
        elif c == close:
            depth -= 1
            if depth == 0: return j+1
        j += 1
    raise Exception('unbalanced')

def top_level_blocks(s, i):
    """Given s[i] == '{' of a slice literal, yield (start,end) of each top-level {...} element."""
    end = matching(s, i)
    j = i+1
    while j < end-1:
        c = s[j]
        if c in '"`':
            _, j = parse_go_string(s, j); continue
        if c == '/' and s[j:j+2] == '//':
            j = s.index('\n', j); continue
        if c == '{':
            k = matching(s, j); yield (j, k); j = k; continue
        j += 1

def func_body(src, name):
    i = src.index('func ' + name + '(')
    j = src.index('{', i)
    return src[j:matching(src, j)]

def field(block, name):
    m = re.search(r'\b' + name + r':\s*', block)
    if not m: return None
    k = m.end()
    if block[k] in '"`':
        return parse_concat(block, k)[0]
    return block[k:].split(',')[0].split('\n')[0].strip()

def table(src, fname, marker):
    body = func_body(src, fname)
    i = body.index(marker)
    i = body.index('}{', i) + 1
    rows = []
    for (a, b) in top_level_blocks(body, i):
        rows.append(body[a:b])
    return rows

def line_of(src, fname, block):
    return None

out = ['// Generated from the upstream test files by generate.py; do not edit by hand.', '']
prom = open('/tmp/up/prom/promparse_test.go').read()
om = open('/tmp/up/prom/openmetricsparse_test.go').read()
common = open('/tmp/up/common/expfmt_text_parse_test.go').read()

def err_table(src, fname, rust_name, errfield='err'):
    rows = table(src, fname, 'cases := []struct')
    out.append(f'/// `{fname}`: (input, upstream error; empty or `EOF` when upstream accepts the input).')
    out.append(f'pub const {rust_name}: &[(&[u8], &[u8])] = &[')
    for r in rows:
        inp = field(r, 'input'); err = field(r, errfield)
        out.append(f'    ({rust_bytes(inp)}, {rust_bytes(err or b"")}),')
    out.append('];\n')

err_table(prom, 'TestPromParseErrors', 'PROM_PARSE_ERRORS')
err_table(prom, 'TestPromNullByteHandling', 'PROM_NULL_BYTE_HANDLING')
err_table(om, 'TestOpenMetricsParseErrors', 'OM_PARSE_ERRORS')
err_table(om, 'TestOMNullByteHandling', 'OM_NULL_BYTE_HANDLING')

# expfmt bad cases
body = func_body(common, 'testTextParseError')
i = body.index('}{', body.index('scenarios := []struct')) + 1
out.append('/// prometheus/common `testTextParseError`: (input, upstream error with UTF-8 validation).')
out.append('pub const EXPFMT_TEXT_PARSE_ERRORS: &[(&[u8], &[u8])] = &[')
for (a, b) in top_level_blocks(body, i):
    r = body[a:b]
    out.append(f'    ({rust_bytes(field(r, "in"))}, {rust_bytes(field(r, "errUTF8") or b"")}),')
out.append('];\n')

# expfmt good cases: input, family names, label pairs
body = func_body(common, 'testTextParse')
i = body.index('}{', body.index('scenarios := []struct')) + 1
out.append('/// prometheus/common `testTextParse`: (input, the families upstream builds, every label pair of them).')
out.append('pub const EXPFMT_TEXT_PARSE: &[super::GoodCase] = &[')
for (a, b) in top_level_blocks(body, i):
    r = body[a:b]
    inp = field(r, 'in')
    fams = []; pairs = []
    # family names: "Name: proto.String(" at family level (followed later by Type/Help); label pairs: Name+Value adjacent
    for m in re.finditer(r'Name:\s*proto\.String\(', r):
        k = m.end()
        name, k2 = parse_concat(r, k)
        rest = r[k2:k2+200]
        mv = re.match(r'\),\s*Value:\s*proto\.String\(', rest)
        if mv:
            val, _ = parse_concat(rest, mv.end())
            pairs.append((name, val))
        else:
            fams.append(name)
    f = ', '.join(rust_bytes(x) for x in fams)
    p = ', '.join(f'({rust_bytes(n)}, {rust_bytes(v)})' for n, v in pairs)
    out.append(f'    ({rust_bytes(inp)}, &[{f}], &[{p}]),')
out.append('];\n')
open('errors.rs', 'w').write('\n'.join(out))

def func_body(src, name):
    i = src.index('func ' + name + '(')
    j = src.index('{', i)
    return src[j:matching(src, j)]

TYPES = {'Counter':'counter','Gauge':'gauge','Histogram':'histogram','GaugeHistogram':'gaugehistogram',
         'Summary':'summary','Info':'info','Stateset':'stateset','Unknown':'unknown'}

def string_field(block, name):
    m = re.search(r'(?<![A-Za-z_.])' + name + r':\s*', block)
    if not m or block[m.end()] not in '"`': return None
    return parse_concat(block, m.end())[0]

def fromstrings_args(expr, which):
    calls = [m.end() for m in re.finditer(r'labels\.FromStrings\(', expr)]
    k = calls[which]
    args = []
    while True:
        while expr[k] in ' \t\n,': k += 1
        if expr[k] == ')': break
        if expr[k] in '"`':
            v, k = parse_concat(expr, k); args.append(v)
        else:
            m = re.match(r'string\(model\.MetricType(\w+)\)', expr[k:])
            if m:
                args.append(TYPES[m.group(1)].encode()); k += m.end(); continue
            raise Exception('arg ' + expr[k:k+50])
    return list(zip(args[0::2], args[1::2]))

def entries(src, fname):
    body = func_body(src, fname)
    # input
    i = body.index('input :=')
    k = body.index('input :=') + len('input :=')
    while body[k] == ' ': k += 1
    inp, _ = parse_concat(body, k)
    for m in re.finditer(r'input \+= ', body):
        v, _ = parse_concat(body, m.end()); inp += v
    i = body.index('exp := []parsedEntry{')
    i = body.index('{', i + len('exp := []parsedEntry'))
    rows = []
    for (a, b) in top_level_blocks(body, i):
        r = body[a:b]
        m_ = string_field(r, 'm')
        if re.search(r'\bcomment:', r) and m_ is None:
            rows.append(('comment', b'', string_field(r, 'comment') or b'', '', None, []))
            continue
        help_ = string_field(r, 'help')
        unit = string_field(r, 'unit')
        typ = re.search(r'typ:\s*model\.MetricType(\w+)', r)
        if help_ is not None and not re.search(r'\blset:', r):
            rows.append(('help', m_, help_, '', None, [])); continue
        if typ and not re.search(r'\blset:', r):
            rows.append(('type', m_, TYPES[typ.group(1)].encode(), '', None, [])); continue
        if unit is not None and not re.search(r'\blset:', r):
            rows.append(('unit', m_, unit, '', None, [])); continue
        mv = re.search(r"\bv:\s*([^,\n]+),", r)
        v = mv.group(1).strip() if mv else "0"
        t = re.search(r'\bt:\s*int64p\((-?\d+)\)', r)
        lexpr = r[r.index('lset:'):]
        if 'typeAndUnitLabels(' in lexpr.split('\n')[0] or lexpr.startswith('lset: typeAndUnitLabels'):
            lbl = fromstrings_args(lexpr, 1)
        else:
            lbl = fromstrings_args(lexpr, 0)
        rows.append(('series', m_, b'', v, int(t.group(1)) if t else None, lbl))
    return inp, rows

out = ['// Generated from the upstream test files by generate.py; do not edit by hand.', 'use super::Expected;', '']
for path, fname, rust in [
    ('/tmp/up/prom/promparse_test.go', 'TestPromParse', 'PROM_PARSE'),
    ('/tmp/up/prom/promparse_test.go', 'TestUTF8PromParse', 'UTF8_PROM_PARSE'),
    ('/tmp/up/prom/openmetricsparse_test.go', 'TestOpenMetricsParse', 'OPENMETRICS_PARSE'),
    ('/tmp/up/prom/openmetricsparse_test.go', 'TestOpenMetricsParse_UTF8', 'OPENMETRICS_PARSE_UTF8'),
]:
    src = open(path).read()
    inp, rows = entries(src, fname)
    out.append(f'/// `{fname}`: the input, and every entry upstream expects (type-and-unit labels off).')
    out.append(f'pub const {rust}: (&[u8], &[Expected]) = (')
    out.append(f'    {rust_bytes(inp)},')
    out.append('    &[')
    for kind, m_, text, v, t, lbl in rows:
        l = ', '.join(f'({rust_bytes(a)}, {rust_bytes(b)})' for a, b in lbl)
        ts = f'Some({t})' if t is not None else 'None'
        out.append(f'        Expected {{ kind: "{kind}", m: {rust_bytes(m_ or b"")}, text: {rust_bytes(text)}, v: "{v}", t: {ts}, labels: &[{l}] }},')
    out.append('    ],\n);\n')
open('entries.rs', 'w').write('\n'.join(out))
