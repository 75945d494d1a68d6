# CPU-sized nodule crops: bus_crops.py with 32 x 32 px letterboxed crops, batches of 32 labelled basic-train
# crops, epochs of 20 iterations; validation and test load in the main process.
_base_ = ['./bus_crops.py']
crop_size = 32
train_pipeline = [dict(t, size=crop_size) if t.type == 'LetterboxResize' else t for t in _base_.train_pipeline]
test_pipeline = train_pipeline
train_dataloader = dict(
    batch_size=32, num_workers=1,
    sampler=dict(num_labelled=32, num_unlabelled=0, epoch_length=20),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, num_workers=0, persistent_workers=False, dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(batch_size=64, num_workers=0, persistent_workers=False, dataset=dict(pipeline=test_pipeline))
