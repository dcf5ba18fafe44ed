/**
 * Pure planning: desired folder + observed running state → a Plan (data: model.ts, compute.ts; credential bindings
 * and rebinds: bindings.ts) and what follows from it (policy.ts); saved plans and state files (planfile.ts). No file
 * system, network or clock (test/layout.test.ts).
 */
