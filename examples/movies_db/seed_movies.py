#!/usr/bin/env python3
"""Seed a MySQL/MariaDB database ``movies`` with ``directors`` and ``movies`` tables shaped like
the Osiris MySQL -> DuckDB -> Supabase demo, from deterministic generated data.

    MYSQL_HOST=127.0.0.1 MYSQL_USER=root MYSQL_PASSWORD= python examples/movies_db/seed_movies.py

Environment: ``MYSQL_HOST`` (127.0.0.1), ``MYSQL_PORT`` (3306), ``MYSQL_USER`` (root),
``MYSQL_PASSWORD`` (empty), ``MYSQL_DATABASE`` (movies). Options: ``--directors N`` (12),
``--movies N`` (60), ``--seed N`` (42), ``--database NAME``.

Idempotent: the database and tables are created when missing, and their contents are replaced
in one transaction, so running it twice with the same options leaves exactly the same rows.
The same seed always gives the same data (Python's ``random.Random`` is stable across versions
for ``randrange``/``choice`` on the same inputs).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections.abc import Iterator

FIRST = ["Ava", "Jiří", "Mei", "Lukas", "Sofia", "Kenji", "Amara", "Mateo", "Ingrid", "Omar",
         "Chloé", "Ravi", "Elena", "Tomás", "Yuki", "Nadia"]
LAST = ["Novák", "Smith", "Dubois", "Tanaka", "García", "Okafor", "Larsen", "Rossi", "Kowalski",
        "Haddad", "Müller", "Chen", "Petrov", "Silva", "Kim", "O'Brien"]
NATIONALITIES = ["British", "French", "Czech", "Japanese", "Spanish", "Nigerian", "Danish",
                 "Italian", "Polish", "Lebanese", "German", "Chinese", "American", "Brazilian"]
GENRES = ["Drama", "Comedy", "Sci-Fi", "Documentary", "Animation", "Thriller", "Horror",
          "Romance", "Action", "Western"]
WORDS = ["Summer", "Night", "Glass", "River", "Silent", "Crown", "Hollow", "Iron", "Paper",
         "Winter", "Golden", "Last", "Empty", "Northern", "Broken", "Velvet", "Distant", "Echo"]

DDL_DIRECTORS = """
CREATE TABLE IF NOT EXISTS directors (
  director_id INT NOT NULL PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  nationality VARCHAR(50),
  birth_year SMALLINT,
  awards INT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

DDL_MOVIES = """
CREATE TABLE IF NOT EXISTS movies (
  movie_id INT NOT NULL PRIMARY KEY,
  title VARCHAR(200) NOT NULL,
  release_year SMALLINT,
  director_id INT NOT NULL,
  genre VARCHAR(30),
  runtime_minutes SMALLINT,
  budget_usd BIGINT,
  box_office_usd BIGINT,
  KEY idx_movies_director (director_id),
  CONSTRAINT fk_movies_director FOREIGN KEY (director_id) REFERENCES directors (director_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""


def directors(n: int, rng: random.Random) -> Iterator[tuple]:
    for i in range(1, n + 1):
        name = f"{FIRST[(i - 1) % len(FIRST)]} {LAST[(i * 7) % len(LAST)]}"
        yield (i, name, rng.choice(NATIONALITIES), rng.randrange(1935, 1990),
               rng.randrange(0, 12))


def movies(n: int, n_directors: int, rng: random.Random) -> Iterator[tuple]:
    for i in range(1, n + 1):
        title = f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
        budget = rng.randrange(5, 2000) * 100_000
        box_office = int(budget * rng.randrange(10, 600) / 100) // 100_000 * 100_000
        yield (i, title, rng.randrange(1970, 2025), rng.randrange(1, n_directors + 1),
               rng.choice(GENRES), rng.randrange(75, 190), budget, box_office)


def chunks(rows: Iterator[tuple], size: int = 5000) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def main(argv: list[str] | None = None) -> int:
    import pymysql

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", default=os.environ.get("MYSQL_DATABASE", "movies"))
    ap.add_argument("--directors", type=int, default=12)
    ap.add_argument("--movies", type=int, default=60)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    if args.directors < 1 or args.movies < 0:
        ap.error("--directors must be >= 1 and --movies >= 0")

    host = os.environ.get("MYSQL_HOST", "127.0.0.1")
    port = int(os.environ.get("MYSQL_PORT", "3306"))
    user = os.environ.get("MYSQL_USER", "root")
    try:
        conn = pymysql.connect(host=host, port=port, user=user,
                               password=os.environ.get("MYSQL_PASSWORD", ""),
                               charset="utf8mb4", autocommit=True)
    except pymysql.Error as exc:
        print(f"cannot connect to MySQL {host}:{port} as {user}: {exc.args[-1]} "
              "(check MYSQL_HOST, MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD)", file=sys.stderr)
        return 1
    db = "`" + args.database.replace("`", "``") + "`"
    rng = random.Random(args.seed)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4")
            cur.execute(f"USE {db}")
            cur.execute(DDL_DIRECTORS)
            cur.execute(DDL_MOVIES)
            conn.begin()
            cur.execute("DELETE FROM movies")
            cur.execute("DELETE FROM directors")
            cur.executemany("INSERT INTO directors (director_id, name, nationality, birth_year, "
                            "awards) VALUES (%s, %s, %s, %s, %s)",
                            list(directors(args.directors, rng)))
            for batch in chunks(movies(args.movies, args.directors, rng)):
                cur.executemany("INSERT INTO movies (movie_id, title, release_year, director_id, "
                                "genre, runtime_minutes, budget_usd, box_office_usd) VALUES "
                                "(%s, %s, %s, %s, %s, %s, %s, %s)", batch)
            conn.commit()
    except pymysql.Error as exc:
        conn.rollback()
        print(f"seeding {args.database} on {host}:{port} failed: {exc.args[-1]}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(f"seeded {args.database} on {host}:{port}: {args.directors} directors, "
          f"{args.movies} movies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
