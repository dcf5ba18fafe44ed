/**
 * The HTTP API's routes, one file per area, all in one style: a handler answers `{ status, body }` or throws HttpError.
 * Health and observation routes are public; every /v1/* route needs the API token.
 */
