"""Video files to manifests: probing, preparation (transcode, resize, GOP), synthetic sets, checks and layouts."""
