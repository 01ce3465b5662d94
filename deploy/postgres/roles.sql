-- The roles shortener runs with, made idempotently (run it again: it changes nothing). Roles
-- belong to the whole server, not to a database, so the migrations never make them; an
-- operator runs this once as a superuser (or declares the same roles in CloudNativePG's
-- `managed.roles`), then `shortener migrate` with SHORTENER_DATABASE_APP_ROLE=shortener_app
-- gives the application role its rights in the database.
--
--   psql -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
--
-- shortener_owner owns the schema and runs `shortener migrate` and the `shortener apikey`
-- commands; shortener_app holds the service's rights and logs in as nobody; shortener_app_a
-- is what the pods log in as (a second member, shortener_app_b, makes a password rotation
-- a matter of adding a role; see docs/operations.md). Passwords are set afterwards, never here:
--
--   \password shortener_owner
--   \password shortener_app_a

SELECT 'CREATE ROLE shortener_owner LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shortener_owner') \gexec

SELECT 'CREATE ROLE shortener_app NOLOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shortener_app') \gexec

SELECT 'CREATE ROLE shortener_app_a LOGIN IN ROLE shortener_app'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shortener_app_a') \gexec

SELECT 'CREATE DATABASE shortener OWNER shortener_owner'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'shortener') \gexec
