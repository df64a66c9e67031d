// Types for scripts/dashboards-configmap.mjs (plain Node), for test/manifests.test.ts.
export declare const DASHBOARD_DIR: string;
export declare const CONFIGMAP_FILE: string;
export declare function dashboardFiles(dir?: string): { file: string; text: string }[];
export declare function renderDashboardConfigMaps(dir?: string): string;
