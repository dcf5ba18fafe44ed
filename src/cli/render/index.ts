/**
 * Renderers: diagnostics and plans as text, GitHub annotations and Markdown (the job summary). Pure functions of their
 * input and the Output they write to.
 */
