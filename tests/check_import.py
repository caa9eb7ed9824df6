#!/usr/bin/env python3
"""Independent check of ferry's MongoDB -> PostgreSQL import of the fixture in tests/tests/import.rs.

Knows the fixture's intended mapping itself (not ferry's config or code), reads MongoDB through
pymongo and PostgreSQL through `psql` (row_to_json), and checks that every document is exactly
one row with equal values (lessons: one row per array element) or exactly one reject with a
reason, never both; that imported + rejected = documents per collection; and that foreign keys
hold. Exit 0: all hold; 1: problems (listed); 2: usage or environment error.
"""
import argparse, datetime as dt, json, os, subprocess, sys, uuid  # noqa: E401
from decimal import Decimal

import pymongo
from bson import Decimal128, ObjectId

UTC = dt.timezone.utc


def psql_json(url, sql):
    env = dict(os.environ, PGTZ='UTC', PGCLIENTENCODING='UTF8', PGDATESTYLE='ISO')
    r = subprocess.run(['psql', '-X', '-q', '-At', '-0', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql],
                       capture_output=True, env=env)
    if r.returncode:
        print('psql failed: ' + r.stderr.decode(errors='replace').strip())
        sys.exit(2)
    return [json.loads(x, parse_float=Decimal) for x in r.stdout.decode().split('\0') if x.strip()]


def rows(url, schema, table):
    return psql_json(url, f'SELECT row_to_json(t) FROM "{schema}"."{table}" t')


def oid_uuid(oid):
    return str(uuid.UUID(bytes=oid.binary + b'\0\0\0\0'))


def ts(v):
    """A BSON date (naive UTC from pymongo) as an aware datetime, ms precision."""
    return v.replace(tzinfo=UTC)


def pg_ts(s):
    return dt.datetime.fromisoformat(s).astimezone(UTC) if s is not None else None


def dec(v):
    if v is None:
        return None
    return v.to_decimal() if isinstance(v, Decimal128) else Decimal(str(v))


def get(doc, path):
    for p in path.split('.'):
        if not isinstance(doc, dict) or p not in doc:
            return None
        doc = doc[p]
    return doc


def expected(coll, d):
    """The row a document should become, by the fixture's intended mapping."""
    if coll == 'organizations':
        return {'id': oid_uuid(d['_id']), 'name': d.get('name'), 'plan': d.get('plan'),
                'settings': d.get('settings'), 'created_at': ts(d['createdAt'])}
    if coll == 'users':
        org = d.get('org')
        return {'id': oid_uuid(d['_id']), 'email': d.get('email'), 'full_name': get(d, 'profile.name'),
                'role': d.get('role'), 'organization_id': oid_uuid(org) if org else None,
                'tags': d.get('tags'), 'balance': dec(d.get('balance')), 'logins': d.get('logins'),
                'created_at': ts(d['createdAt'])}
    if coll == 'courses':
        s = d.get('startsOn')
        return {'id': oid_uuid(d['_id']), 'title': d.get('title'), 'instructor_id': oid_uuid(d['instructor']),
                'price': dec(d.get('price')), 'published': d.get('published'),
                'starts_on': s.date().isoformat() if s else None}
    if coll == 'enrollments':
        return {'id': oid_uuid(d['_id']), 'user_id': oid_uuid(d['user']), 'course_id': oid_uuid(d['course']),
                'enrolled_at': ts(d['enrolledAt']), 'progress': d.get('progress')}
    raise KeyError(coll)


def normalize(coll, row):
    row = dict(row)
    for k in ('created_at', 'enrolled_at'):
        if k in row:
            row[k] = pg_ts(row[k])
    for k in ('balance', 'price'):
        if k in row and row[k] is not None:
            row[k] = Decimal(row[k])
    if 'progress' in row and row['progress'] is not None:
        row['progress'] = float(row['progress'])
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pg-url', required=True)
    ap.add_argument('--schema', required=True, help='the application schema holding the tables')
    ap.add_argument('--record-schema', required=True, help="ferry's schema holding import_rejects")
    ap.add_argument('--mongo-uri', required=True)
    ap.add_argument('--mongo-db', required=True)
    a = ap.parse_args()
    db = pymongo.MongoClient(a.mongo_uri)[a.mongo_db]
    rejects = {}
    for r in psql_json(a.pg_url, f'SELECT row_to_json(r) FROM "{a.record_schema}".import_rejects r'):
        key = (r['collection'], r['source_id'])
        if key in rejects:
            problems.append(f'{key}: two rejects')
        rejects[key] = r
    summary = {}
    for coll in ('organizations', 'users', 'courses', 'enrollments'):
        table = {normalize(coll, r)['id']: normalize(coll, r) for r in rows(a.pg_url, a.schema, coll)}
        docs = list(db[coll].find())
        n_rej = 0
        for d in docs:
            sid = str(d['_id'])
            rid = oid_uuid(d['_id'])
            rej = rejects.get((coll, sid))
            row = table.get(rid)
            if rej and row:
                problems.append(f'{coll} {sid}: both a row and a reject ({rej["reason"]})')
            elif rej:
                n_rej += 1
                if not rej['reason'].strip():
                    problems.append(f'{coll} {sid}: reject without a reason')
                if rej['document'].get('_id', {}).get('$oid') != sid:
                    problems.append(f'{coll} {sid}: reject holds another document')
            elif not row:
                problems.append(f'{coll} {sid}: neither a row nor a reject')
            else:
                want = expected(coll, d)
                for k, v in want.items():
                    if row.get(k) != v:
                        problems.append(f'{coll} {sid}.{k}: row has {row.get(k)!r}, document says {v!r}')
                if coll == 'courses':
                    check_lessons(a, d, rid)
        if len(table) + n_rej != len(docs):
            problems.append(f'{coll}: {len(table)} rows + {n_rej} rejects != {len(docs)} documents')
        extra = set(table) - {oid_uuid(d['_id']) for d in docs}
        if extra:
            problems.append(f'{coll}: rows without a document: {sorted(extra)[:5]}')
        summary[coll] = (len(docs), len(table), n_rej)
    # Foreign keys (declared in the fixture too; checked here without trusting that).
    for child, col, parent in (('users', 'organization_id', 'organizations'), ('courses', 'instructor_id', 'users'),
                               ('lessons', 'course_id', 'courses'), ('enrollments', 'user_id', 'users'),
                               ('enrollments', 'course_id', 'courses')):
        orphans = psql_json(a.pg_url, f'SELECT to_json(c.id) FROM "{a.schema}"."{child}" c '
                                      f'LEFT JOIN "{a.schema}"."{parent}" p ON p.id = c."{col}" '
                                      f'WHERE c."{col}" IS NOT NULL AND p.id IS NULL')
        if orphans:
            problems.append(f'{child}.{col}: {len(orphans)} rows point at no {parent} row')
    lessons = psql_json(a.pg_url, f'SELECT count(*) FROM "{a.schema}".lessons')[0]
    if lessons != lessons_expected[0]:
        problems.append(f'lessons: {lessons} rows, imported courses hold {lessons_expected[0]} elements')
    for p in problems[:40]:
        print(p)
    print(json.dumps({c: {'documents': s[0], 'rows': s[1], 'rejects': s[2]} for c, s in summary.items()}))
    return 1 if problems else 0


def check_lessons(a, d, course_id):
    want = d.get('lessons') or []
    lessons_expected[0] += len(want)
    got = psql_json(a.pg_url, f'SELECT row_to_json(l) FROM "{a.schema}".lessons l '
                              f"WHERE course_id = '{course_id}' ORDER BY position")
    if len(got) != len(want):
        problems.append(f'course {d["_id"]}: {len(got)} lesson rows for {len(want)} elements')
        return
    for i, (g, w) in enumerate(zip(got, want)):
        wid = str(uuid.uuid5(uuid.UUID(course_id), f'lessons.{i}'))
        exp = {'id': wid, 'position': i, 'title': w.get('title'), 'duration_min': w.get('durationMin')}
        for k, v in exp.items():
            if g.get(k) != v:
                problems.append(f'course {d["_id"]} lesson {i}.{k}: row has {g.get(k)!r}, element says {v!r}')


problems = []
lessons_expected = [0]

if __name__ == '__main__':
    sys.exit(main())
