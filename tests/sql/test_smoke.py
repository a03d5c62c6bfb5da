import psycopg


def test_fresh_database_is_stable(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    assert conn.execute("SELECT public.is_system_stable()").fetchone() == (True,)
