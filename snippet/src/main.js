// The bundle entry. `__SPLITEDGE_CONFIG__` is an undeclared global, so the minifier keeps
// it; the edge server replaces that token (it occurs exactly once) with the site's config.
import { boot } from './runtime.js';

boot(__SPLITEDGE_CONFIG__);
