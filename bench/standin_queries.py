#!/usr/bin/env python3
"""What each query the import makes costs on the MongoDB stand-in (secantusd-py), against a
full cursor read of the same collection: the stand-in answers `_id` ranges, limits and counts
by scanning the whole collection, where MongoDB walks its `_id` index.

    bench/standin_queries.py [--docs 100000] [--uri mongodb://127.0.0.1:27017]

Loads DOCS documents shaped like `ferry-bench import`'s into a scratch database, times each
query (pymongo, so the client's decoding is included alike), prints one line per query and
the winning plan of an `_id` range, and drops the database.
"""
import argparse, datetime, time  # noqa: E401

import bson
import pymongo
from bson.decimal128 import Decimal128


def oid(i):
    return bson.ObjectId(bytes([0x65, 0, 0, 0]) + i.to_bytes(8, 'big'))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--docs', type=int, default=100_000)
    ap.add_argument('--uri', default='mongodb://127.0.0.1:27017')
    a = ap.parse_args()
    db = pymongo.MongoClient(a.uri)['bench_standin_queries']
    db.drop_collection('items')
    n = a.docs
    for k in range(0, n, 1000):
        db.items.insert_many([
            {'_id': oid(i), 'email': f'user{i}@example.com',
             'profile': {'name': f'User {i}', 'bio': 'x'},
             'balance': Decimal128(f'{i}.{i % 100:02d}'),
             'createdAt': datetime.datetime(2024, 1, 1), 'tags': ['a', 'b'],
             'settings': {'theme': 'dark', 'limits': {'seats': i % 50}},
             'active': i % 2 == 0, 'logins': i % 50}
            for i in range(k, min(k + 1000, n))], ordered=False)
    lo, hi = oid(n // 2), oid(n // 2 + n // 5)

    def timed(name, f):
        t = time.time()
        r = f()
        print(f'{name:<52} {time.time() - t:7.2f} s  ({r})')

    def count(cur):
        return sum(1 for _ in cur)

    timed('full read, sort _id (the baseline)',
          lambda: count(db.items.find({}).sort('_id', 1).batch_size(1000)))
    timed('_id range of a fifth, sort _id (a chunk)',
          lambda: count(db.items.find({'_id': {'$gt': lo, '$lte': hi}}).sort('_id', 1)
                        .batch_size(1000)))
    timed('ids only, sort _id (chunk bounds)',
          lambda: count(db.items.find({}, {'_id': 1}).sort('_id', 1).batch_size(10000)))
    timed('first 1000 by _id (plan sample)',
          lambda: count(db.items.find({}).sort('_id', 1).limit(1000)))
    timed('any 1000 (unsorted limit)', lambda: count(db.items.find({}).limit(1000)))
    timed('estimated_document_count', db.items.estimated_document_count)
    timed('count_documents({})', lambda: db.items.count_documents({}))
    plan = db.items.find({'_id': {'$gt': lo, '$lte': hi}}).sort('_id', 1).explain()
    print('plan of an _id range:', plan.get('queryPlanner', {}).get('winningPlan'))
    db.client.drop_database('bench_standin_queries')


if __name__ == '__main__':
    main()
