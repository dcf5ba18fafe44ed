/**
 * The file format: YAML files of a folder → JSON Schema (schema/) and cross-file rules → typed server and flow specs,
 * with positioned diagnostics (file, line, column, stable code), and how a shortName appears in message keys and file
 * names (keys.ts). No network; secrets are references, never resolved here.
 */
