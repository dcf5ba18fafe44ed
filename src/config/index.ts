/**
 * The file format: YAML files of a folder → JSON Schema (schema/) and cross-file rules → typed server and flow specs,
 * with positioned diagnostics (file, line, column, stable code). No network; secrets are references, never resolved here.
 */
