#!/usr/bin/env python3
"""Independent check of ferry's PostgreSQL -> MongoDB mirror (the `sync` job's contract).

Reads PostgreSQL through `psql` (row_to_json, no Python driver) and MongoDB through pymongo, and
compares every row of every table with its document. Exit 0: all match; 1: differences (the
first 20 are listed); 2: usage or environment error. See tests/fixtures/README.md.
"""
import argparse, datetime as dt, json, os, re, struct, subprocess, sys  # noqa: E401
from decimal import Decimal

try:
    import pymongo
    from bson import Decimal128, Int64
except ImportError:
    pymongo = None

UTC = dt.timezone.utc
SCALARS = {'int2', 'int4', 'int8', 'float4', 'float8', 'bool', 'uuid', 'numeric', 'bytea',
           'timestamptz', 'timestamp', 'date'}
TEXTS = {'text', 'varchar', 'bpchar', 'name', 'char'}
TS = {'timestamptz', 'timestamp'}
WANT = {'int2': 'Int32', 'int4': 'Int32', 'int8': 'Int64', 'float4': 'double', 'float8': 'double',
        'bool': 'bool', 'text': 'string', 'uuid': 'string', 'other': 'string (text form)',
        'numeric': 'Decimal128, same digits', 'bytea': 'binary subtype 0', 'json': 'same JSON',
        'date': {'date': 'date at 00:00 UTC', 'iso': 'string YYYY-MM-DD'},
        'timestamp': {'date': 'date, ms', 'iso': 'ISO-8601 string'}}


class Usage(Exception):
    """A usage or environment error: exit 2."""


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def ident(s):
    return '"' + s.replace('"', '""') + '"'


def psql_json(url, sql):
    """Runs `sql`, whose rows are one JSON value each, and returns them parsed."""
    env = dict(os.environ, PGTZ='UTC', PGCLIENTENCODING='UTF8', PGDATESTYLE='ISO')
    try:
        r = subprocess.run(['psql', '-X', '-q', '-At', '-0', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql],
                           capture_output=True, env=env)
    except FileNotFoundError:
        raise Usage('psql not found on PATH') from None
    if r.returncode:
        raise Usage('psql failed: ' + r.stderr.decode(errors='replace').strip())
    return [json.loads(x, parse_float=Decimal, parse_int=int)
            for x in r.stdout.decode('utf-8').split('\0') if x.strip()]


def kind_of(types, oid):
    """'int4', 'text', 'json', 'other', ... or '[]' + element kind, domains and enums resolved."""
    name, typtype, base, elem, cat = types[oid]
    if typtype == 'd':
        return kind_of(types, base)
    if cat == 'A' and elem:
        return '[]' + kind_of(types, elem)
    if typtype == 'e' or name in TEXTS:
        return 'text'
    if name in ('json', 'jsonb'):
        return 'json'
    return name if name in SCALARS else 'other'


def parse_ts(s):
    s = re.sub(r'(\.\d{1,6})\d*', lambda m: m.group(1).ljust(7, '0'), s.replace('Z', '+00:00'))
    t = dt.datetime.fromisoformat(s)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def floor_ms(t):
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def f32(x):
    return struct.unpack('f', struct.pack('f', x))[0]


def show(v):
    if v is None:
        return 'null'
    if isinstance(v, bool):
        return 'bool ' + str(v).lower()
    for t, label in ((Int64, 'Int64'), (int, 'Int32'), (float, 'double'), (Decimal128, 'Decimal128')):
        if isinstance(v, t):
            return f'{label} {v!r}' if t is float else f'{label} {v}'
    if isinstance(v, bytes):
        return f'binary({getattr(v, "subtype", 0)}) {bytes(v).hex()}'
    if isinstance(v, dt.datetime):
        return 'date ' + v.isoformat()
    s = json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (dict, list, str)) else repr(v)
    return s if len(s) <= 100 else s[:97] + '...'


def json_diff(p, m, path=''):
    """(path, postgres value, mongo value) at the first difference of a JSON value, or None."""
    if isinstance(p, list) and isinstance(m, list) and len(m) == len(p):
        return next((d for i, (a, b) in enumerate(zip(p, m)) if (d := json_diff(a, b, f'{path}[{i}]'))), None)
    if isinstance(p, dict) and isinstance(m, dict) and set(m) == set(p):
        return next((d for k in p if (d := json_diff(p[k], m[k], f'{path}.{k}'))), None)
    if p is None or isinstance(p, (bool, str)):
        ok = type(m) is type(p) and m == p
    elif isinstance(p, int):
        ok = isinstance(m, int) and not isinstance(m, bool) and m == p
    elif isinstance(p, Decimal):
        ok = type(m) is float and m == float(p)
    else:
        ok = False
    return None if ok else (path, p, m)


def same(kind, p, m, mode):
    """Whether mongo value `m` is the mapping of postgres value `p` (row_to_json; text form for 'other')."""
    if p is None:
        return m is None
    if kind.startswith('[]'):
        sub = kind if p and isinstance(p[0], list) else kind[2:]
        return isinstance(m, list) and len(m) == len(p) and all(same(sub, a, b, mode) for a, b in zip(p, m))
    if kind in ('int2', 'int4'):
        return type(m) is int and m == p
    if kind == 'int8':
        return isinstance(m, Int64) and m == p
    if kind in ('float4', 'float8'):
        return type(m) is float and (m == float(p) or (kind == 'float4' and m == f32(float(p))))
    if kind == 'bool':
        return type(m) is bool and m == p
    if kind in ('text', 'uuid', 'other'):
        return type(m) is str and m == p
    if kind == 'numeric':
        d = Decimal(p)
        if isinstance(m, Decimal128):
            md = m.to_decimal()
            return md == d and md.as_tuple().exponent == d.as_tuple().exponent
        return type(m) is str and len(d.as_tuple().digits) > 34 and m == format(d, 'f')
    if kind in TS:
        t = parse_ts(p)
        if mode == 'date':
            return isinstance(m, dt.datetime) and m == floor_ms(t)
        return type(m) is str and re.fullmatch(r'\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)', m) and parse_ts(m) == t
    if kind == 'date':
        if mode == 'date':
            return isinstance(m, dt.datetime) and m == dt.datetime.fromisoformat(p).replace(tzinfo=UTC)
        return type(m) is str and m == p
    if kind == 'bytea':
        return isinstance(m, bytes) and getattr(m, 'subtype', 0) == 0 and bytes(m) == bytes.fromhex(p[2:])
    if kind == 'json':
        return json_diff(p, m) is None
    raise AssertionError(kind)


def want_of(kind, mode):
    want = WANT[kind.lstrip('[]').replace('timestamptz', 'timestamp')]
    return (want[mode] if isinstance(want, dict) else want) + (' elements' if kind[:2] == '[]' else '')


def key_of(kind, v, mode):
    """A comparable string for a key value on either side, to pair rows with documents."""
    if kind in TS and isinstance(v, (str, dt.datetime)):
        t = v if isinstance(v, dt.datetime) else parse_ts(v)
        return (floor_ms(t) if mode == 'date' else t).isoformat()
    if kind == 'date' and isinstance(v, dt.datetime):
        return v.date().isoformat()
    return str(v.to_decimal() if isinstance(v, Decimal128) else v)


def check_table(url, schema, t, db, excluded, mode, diffs):
    name, pk, cols, parts = t['name'], t['pk'], t['cols'], t['parts']
    existing = set(db.list_collection_names())
    for p in parts:
        if p in existing and db[p].count_documents({}):
            diffs.append(f'{p}: partition of {name} mirrored as its own collection')
    if not pk:
        n = db[name].count_documents({}) if name in existing else 0
        if n:
            diffs.append(f'{name}: table has no primary key but its collection holds {n} documents')
        return 0
    # Types without a BSON counterpart are compared in their `::text` form (elementwise for arrays).
    texts = ', '.join(f'{lit(c)}, t.{ident(c)}::text' + '[]' * (k != 'other')
                      for c, k in cols.items() if k.lstrip('[]') == 'other')
    rows = psql_json(url, f'select json_build_array(row_to_json(t), json_build_object({texts})) '
                          f'from {ident(schema)}.{ident(name)} t')
    if name not in existing and rows:
        diffs.append(f'{name}: no collection in mongo ({len(rows)} rows in postgres)')
        return len(rows)
    # Documents are paired with rows by the text of their key, so documents whose `_id`s differ
    # only in BSON type (Int32 5, Int64 5, "5") land on one key: each is kept and reported, so
    # a duplicate cannot hide behind the document that happens to be compared.
    docs, dups, count = {}, {}, 0
    for d in db[name].find():
        count += 1
        i = d.get('_id')
        k = key_of(cols[pk[0]], i, mode) if len(pk) == 1 else (
            ','.join(f'{c}={key_of(cols[c], i.get(c), mode)}' for c in pk) if isinstance(i, dict) else repr(i))
        if k in docs:
            dups.setdefault(k, [docs[k]['_id']]).append(i)
        else:
            docs[k] = d
    for k, ids in dups.items():
        diffs.append(f'{name}[_id={k}]: {len(ids)} documents for one row: ' + ', '.join(show(i) for i in ids))
    # Counted independently of the pairing above: the server's own count of the collection.
    n = db[name].count_documents({})
    if n != len(rows) or count != len(rows):
        diffs.append(f'{name}: {n} documents (found {count}) for {len(rows)} rows')
    wanted = [c for c in cols if (name, c) not in excluded]
    for row, text in rows:
        row.update(text)
        k = key_of(cols[pk[0]], row[pk[0]], mode) if len(pk) == 1 else ','.join(
            f'{c}={key_of(cols[c], row[c], mode)}' for c in pk)
        where = f'{name}[_id={k}]'
        d = docs.pop(k, None)
        if d is None:
            diffs.append(f'{where}: missing in mongo')
            continue
        i = d['_id']
        if len(pk) == 1:
            if not same(cols[pk[0]], row[pk[0]], i, mode):
                diffs.append(f'{where}._id: postgres {row[pk[0]]} != mongo {show(i)} (want {want_of(cols[pk[0]], mode)})')
        elif not isinstance(i, dict) or list(i) != pk or not all(same(cols[c], row[c], i[c], mode) for c in pk):
            diffs.append(f'{where}._id: expected sub-document with keys {pk} in order, got {show(i)}')
        for c in sorted(set(d) - set(wanted) - {'_id'}):
            diffs.append(f'{where}.{c}: unexpected field' + (' (excluded column)' if c in cols else ''))
        for c in wanted:
            if c not in d:
                diffs.append(f'{where}.{c}: field missing in mongo')
            elif not same(cols[c], row[c], d[c], mode):
                p, m, at = row[c], d[c], ''
                if cols[c] == 'json':
                    at, p, m = json_diff(p, m)
                pshow = json.dumps(p, ensure_ascii=False, default=str) if isinstance(p, (list, dict)) else p
                diffs.append(f'{where}.{c}{at}: postgres {pshow} != mongo {show(m)} (want {want_of(cols[c], mode)})')
    for k in docs:
        diffs.append(f'{name}: unexpected document _id={k}')
    return len(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--pg-url', required=True)
    ap.add_argument('--schema', required=True)
    ap.add_argument('--mongo-uri', required=True)
    ap.add_argument('--mongo-db', required=True)
    ap.add_argument('--tables', help='comma-separated tables (default: every table of the schema)')
    ap.add_argument('--exclude', action='append', default=[], help='table.column[,...]; repeatable')
    ap.add_argument('--timestamps', choices=['date', 'iso'], default='date')
    a = ap.parse_args(argv)
    try:
        if pymongo is None:
            raise Usage('pymongo is not installed (pip install pymongo)')
        types = {r[0]: r[1:] for r in psql_json(a.pg_url, 'select json_build_array(oid::int8, typname, typtype, '
                                                'typbasetype::int8, typelem::int8, typcategory) from pg_type')}
        tables = {}
        for name, pk, cols, parts in psql_json(a.pg_url, f"""
            select json_build_array(c.relname,
              (select json_agg(a.attname order by k.ord) from pg_index i
                 cross join unnest(i.indkey) with ordinality k(n, ord)
                 join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.n
               -- indkey lists a key's INCLUDE columns after its indnkeyatts key columns
               where i.indrelid = c.oid and i.indisprimary and k.ord <= i.indnkeyatts),
              (select json_agg(json_build_array(attname, atttypid::int8) order by attnum) from pg_attribute
               where attrelid = c.oid and attnum > 0 and not attisdropped),
              (select json_agg(p.relname) from pg_partition_tree(c.oid) pt join pg_class p on p.oid = pt.relid
               where pt.relid <> c.oid))
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = {lit(a.schema)} and c.relkind in ('r', 'p') and not c.relispartition"""):
            cols = {c: kind_of(types, oid) for c, oid in cols or []}
            tables[name] = dict(name=name, pk=pk or [], cols=cols, parts=parts or [])
        if not tables:
            raise Usage(f'schema {a.schema!r} has no tables (or does not exist)')
        chosen = [s.strip() for s in a.tables.split(',') if s.strip()] if a.tables else sorted(tables)
        for n in chosen:
            if n not in tables:
                raise Usage(f'--tables: no table {n!r} in schema {a.schema!r}')
        excluded = set()
        for item in (x.strip() for e in a.exclude for x in e.split(',') if x.strip()):
            tbl, dot, col = item.partition('.')
            if not dot or tbl not in tables or col not in tables[tbl]['cols']:
                raise Usage(f'--exclude: {item!r} is not an existing table.column')
            excluded.add((tbl, col))
        client = pymongo.MongoClient(a.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)
        try:
            client.admin.command('ping')
        except pymongo.errors.PyMongoError as e:
            raise Usage(f'cannot reach mongo at {a.mongo_uri}: {e}')
        db = client[a.mongo_db]
        diffs, count = [], 0
        for n in chosen:
            count += check_table(a.pg_url, a.schema, tables[n], db, excluded, a.timestamps, diffs)
    except Usage as e:
        print(f'check_mirror: error: {e}', file=sys.stderr)
        return 2
    if diffs:
        for d in diffs[:20]:
            print(d)
        more = ' (first 20 shown)' if len(diffs) > 20 else ''
        print(f'FAIL: {len(diffs)} differences{more}; schema {a.schema} vs mongo db {a.mongo_db}')
        return 1
    print(f'ok: {count} rows in {len(chosen)} tables match mongo db {a.mongo_db} (timestamps={a.timestamps})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
